"""A three-child tree against a local TCP server: ``python -m examples.three_children``.

``echo`` serves on 127.0.0.1; ``client`` depends on it (rest_for_one: when the
server restarts, the client reconnects after it) and drops its connection now
and then; ``ticker`` crashes on its own schedule. Watch the supervisor restart
each, then press Ctrl-C (or wait ``--seconds``) for the ordered shutdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from typing import Any

import trio

import specs
import supervisor


async def echo_server(port_box: list[int], task_status: trio.TaskStatus[None]) -> None:
    """Serve an echo protocol on a free loopback port; ready once listening."""

    async def handle(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port_box[:] = [listeners[0].socket.getsockname()[1]]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started()
        await trio.sleep_forever()


async def echo_client(
    port_box: list[int], rng: random.Random, task_status: trio.TaskStatus[None]
) -> None:
    """Talk to the echo server; crash when the connection goes away or on a bad day."""
    stream = await trio.open_tcp_stream("127.0.0.1", port_box[0])
    async with stream:
        task_status.started()
        for n in range(1_000_000):
            await stream.send_all(b"ping %d" % n)
            if not await stream.receive_some(64):
                raise ConnectionError("echo server closed the connection")
            await trio.sleep(0.5)
            if rng.random() < 0.1:
                raise ConnectionError("simulated network blip")


async def ticker(rng: random.Random) -> None:
    """A periodic job that fails now and then."""
    while True:
        await trio.sleep(1)
        if rng.random() < 0.15:
            raise RuntimeError("ticker job failed")


def build_tree(seed: int | None = None) -> specs.SupervisorSpec:
    """The example tree: echo server, its client (rest_for_one), a flaky ticker."""
    rng = random.Random(seed)
    port_box: list[int] = []
    return specs.SupervisorSpec(
        name="example",
        strategy=specs.REST_FOR_ONE,
        intensity=10,
        period=10,
        backoff=specs.Backoff(wait_initial=0.2, wait_max=2, wait_jitter=0.1),
        children=[
            specs.ChildSpec(id="echo", start=echo_server, args=(port_box,)),
            specs.ChildSpec(id="client", start=echo_client, args=(port_box, rng)),
            specs.ChildSpec(id="ticker", start=ticker, args=(rng,)),
        ],
    )


def main(argv: list[str] | None = None) -> Any:
    """Run the example until Ctrl-C, or for ``--seconds``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tree = build_tree(args.seed)

    async def run_for() -> None:
        with trio.move_on_after(args.seconds if args.seconds is not None else float("inf")):
            async with supervisor.open_supervisor(tree) as sup:
                await trio.sleep_forever()
        print(json.dumps(sup.snapshot().to_dict(), indent=2))

    if args.seconds is None:
        supervisor.run(tree)
    trio.run(run_for)


if __name__ == "__main__":
    main()
