"""A worker in about 20 lines: ``python -m examples.echo_worker``.

It connects in ``init`` (the supervisor starts the next sibling only after),
answers ``call``s through its mailbox, probes its link, and when anything goes
wrong it just raises: the classifier turns the socket error into a typed
``ConnectionLost`` and the supervisor restarts it after a backoff.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

import specs
import supervisor
import workers


class EchoClient(workers.Worker):
    probe_interval = 1.0  # a link that stops answering ends in HeartbeatTimeout
    probe_timeout = 0.5

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = port

    async def init(self, ctx: workers.Context) -> None:
        self.stream = await ctx.enter(await trio.open_tcp_stream("127.0.0.1", self.port))

    async def handle_call(self, ctx: workers.Context, request: Any) -> Any:
        await self.stream.send_all(request)
        return await self.stream.receive_some(1024)

    async def probe(self, ctx: workers.Context) -> None:
        await self.handle_call(ctx, b"ping")


async def main() -> None:
    """Run an echo server and the worker; kill the server's connection once; call again."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    connections: list[trio.CancelScope] = []

    async def echo(stream: trio.SocketStream) -> None:
        with trio.CancelScope() as connection:  # cancelled to drop the client
            connections.append(connection)
            async for data in stream:
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        tree = specs.SupervisorSpec(
            children=[EchoClient(port).child_spec("echo")],
            backoff=specs.Backoff(wait_initial=0.5, wait_jitter=0.1),
        )
        async with supervisor.open_supervisor(tree):
            print("reply:", await workers.registry.call("echo", b"hello"))
            connections[-1].cancel()  # the server drops us: the probe notices
            await trio.sleep(3)
            print("reply after the restart:", await workers.registry.call("echo", b"again"))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
