"""WebSocket session worker: how fast it learns a session is lost, against baselines.

``python -m benchmarks.bench_websocket [--quick]`` prints medians over several runs,
each against a baseline measured in the same process on the same loopback server:

- close-frame detection: the worker (close frame -> the supervisor's ``ChildExited``)
  vs a bare trio-websocket task blocked in ``get_message()`` and vs the hand-written
  health check it replaces, which polls ``ws.closed`` every 5 s;
- half-open detection (a TCP relay that stops passing bytes): the worker vs its
  bound, ``ping_interval + ping_timeout``;
- reconnect after a server restart: the worker under a one-child supervisor with a
  fixed backoff vs a hand-written ``while True: try/except/sleep(backoff)`` loop,
  and both vs the bound ``backoff + 10 ms``;
- detection latency of every failure case, for the record.

2 shared, noisy cores: read medians, and ratios rather than absolute times.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket

import specs
import supervisor
import workers
from supervisor import events
from workers._websocket import WebSocketConfig, WebSocketMessage, WebSocketSessionWorker
from workers.testing import (
    WebSocketServerBehaviour,
    WebSocketTestServer,
    open_tcp_relay,
    open_websocket_test_server,
)

#: The hand-written monitor's polling period, as found in the wild.
POLL_PERIOD = 5.0
#: The heartbeat used for half-open detection.
PING_INTERVAL, PING_TIMEOUT = 0.2, 0.3
#: The reconnect backoff (fixed, no jitter, so the bound is exact).
RECONNECT_DELAY = 0.1
#: A backoff long enough that nothing restarts during a measurement.
HOLD = specs.Backoff(wait_initial=60, wait_max=60, wait_jitter=0)


class _Exits:
    """A supervisor hook: the time and reason of each exit or failed start."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, BaseException | None]] = []
        self.changed = trio.Event()

    def __call__(self, event: supervisor.Event) -> None:
        if isinstance(event, events.ChildExited):
            self.seen.append((event.time, event.reason.exception))
        elif isinstance(event, events.StartFailed):
            self.seen.append((event.time, event.error))
        else:
            return
        self.changed.set()
        self.changed = trio.Event()

    async def first(self) -> tuple[float, BaseException | None]:
        while not self.seen:
            await self.changed.wait()
        return self.seen[0]


def _worker(url: str, **fields: Any) -> WebSocketSessionWorker:
    send, _ = trio.open_memory_channel[WebSocketMessage](math.inf)
    fields.setdefault("ping_interval", None)
    return WebSocketSessionWorker(
        WebSocketConfig(url=url, **fields), deliver_to=send, registry=workers.Registry()
    )


def _tree(worker: WebSocketSessionWorker, backoff: specs.Backoff = HOLD) -> specs.SupervisorSpec:
    return specs.SupervisorSpec(
        children=[worker.child_spec("ws")], backoff=backoff, intensity=1000, period=1.0
    )


async def _worker_detects(
    server: WebSocketTestServer,
    fault: Callable[[WebSocketTestServer], Awaitable[float]],
    url: str | None = None,
    *,
    settle: bool = True,
    **fields: Any,
) -> tuple[float, BaseException | None]:
    """Seconds from the fault (as ``fault`` reports its time) to the worker's exit.

    With ``settle``, waits for the server to see the connection end, so the next
    run starts on a quiet server (not possible through a black hole).
    """
    exits = _Exits()
    worker = _worker(url or server.url, **fields)
    async with supervisor.open_supervisor(_tree(worker), hooks=[exits]):
        await server.wait_connected(1)
        at = await fault(server)
        with trio.fail_after(30):
            when, failure = await exits.first()
    if settle:
        await _all_gone(server)
    return when - at, failure


async def _all_gone(server: WebSocketTestServer) -> None:
    with trio.fail_after(5):
        await server.wait_disconnected()


def _close(code: int, reason: str = "") -> Callable[[WebSocketTestServer], Awaitable[float]]:
    async def fault(server: WebSocketTestServer) -> float:
        connection = server.connections[0]
        await connection.close(code, reason)
        assert connection.closed_at is not None
        return connection.closed_at

    return fault


def _drop(reset: bool) -> Callable[[WebSocketTestServer], Awaitable[float]]:
    async def fault(server: WebSocketTestServer) -> float:
        connection = server.connections[0]
        await connection.drop(reset=reset)
        assert connection.closed_at is not None
        return connection.closed_at

    return fault


# ----------------------------------------------------------- close detection


async def _close_worker(runs: int) -> list[float]:
    async with open_websocket_test_server() as server:
        return [(await _worker_detects(server, _close(1000)))[0] for _ in range(runs)]


async def _close_bare_recv(runs: int) -> list[float]:
    """A task blocked in get_message(): the best trio-websocket alone can do."""
    found: list[float] = []
    async with open_websocket_test_server() as server:
        for _ in range(runs):
            async with trio_websocket.open_websocket_url(server.url, disconnect_timeout=1) as ws:
                await server.wait_connected(1)
                connection = server.connections[0]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(connection.close, 1000, "")
                    try:
                        await ws.get_message()
                    except trio_websocket.ConnectionClosed:
                        found.append(trio.current_time())
                assert connection.closed_at is not None
                found[-1] -= connection.closed_at
            await _all_gone(server)
    return found


async def _close_polled(runs: int) -> list[float]:
    """The hand-written monitor: ``ws.closed`` checked every POLL_PERIOD seconds.

    Each client's server closes at a random phase of its poll; the clients run side
    by side so the whole measurement takes two periods, not ``runs`` of them.
    """
    found: list[float] = []
    rng = random.Random(1)
    async with open_websocket_test_server() as server:

        async def client(phase: float) -> None:
            async with trio_websocket.open_websocket_url(server.url, disconnect_timeout=1) as ws:
                opened = trio.current_time()
                while True:
                    await trio.sleep(POLL_PERIOD)
                    if ws.closed is not None:
                        break
                found.append(trio.current_time() - (opened + phase))

        async with trio.open_nursery() as nursery:
            for _ in range(runs):
                phase = rng.uniform(0, POLL_PERIOD)
                before = server.accepted
                nursery.start_soon(client, phase)
                await server.wait_accepted(before + 1)
                connection = server.connections[-1]

                async def close_later(connection: Any = connection, phase: float = phase) -> None:
                    await trio.sleep(phase)
                    await connection.close(1000, "")

                nursery.start_soon(close_later)
    return found


# ------------------------------------------------------- half-open detection


async def _half_open_worker(runs: int) -> list[float]:
    found: list[float] = []
    rng = random.Random(2)
    for _ in range(runs):
        async with open_websocket_test_server() as server, open_tcp_relay(server.url) as relay:

            async def freeze(server: WebSocketTestServer) -> float:
                # at a random phase of the heartbeat
                await trio.sleep(PING_INTERVAL + rng.uniform(0, PING_INTERVAL))
                relay.freeze()
                return trio.current_time()

            latency, failure = await _worker_detects(
                server,
                freeze,
                relay.url,
                settle=False,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT,
                disconnect_timeout=0.05,
            )
            assert isinstance(failure, workers.HeartbeatTimeout), failure
            found.append(latency)
    return found


async def _half_open_bare(wait: float) -> float | None:
    """trio-websocket alone, blocked in get_message() on a black-holed link."""
    detected: float | None = None
    async with open_websocket_test_server() as server, open_tcp_relay(server.url) as relay:
        try:
            async with trio_websocket.open_websocket_url(relay.url, disconnect_timeout=0.05) as ws:
                relay.freeze()
                start = trio.current_time()
                with trio.move_on_after(wait):
                    try:
                        await ws.get_message()
                    except trio_websocket.ConnectionClosed:
                        detected = trio.current_time() - start
        except trio_websocket.DisconnectionTimeout:
            pass  # leaving waits for a close answer that cannot come (here 50 ms)
    return detected


# ------------------------------------------------------------------ reconnect


async def _reconnect_worker(runs: int) -> list[float]:
    found: list[float] = []
    backoff = specs.Backoff(wait_initial=RECONNECT_DELAY, wait_max=RECONNECT_DELAY, wait_jitter=0)
    async with open_websocket_test_server() as server:
        worker = _worker(server.url)
        async with supervisor.open_supervisor(_tree(worker, backoff), hooks=[]):
            for _ in range(runs):
                await server.wait_connected(1)
                await trio.sleep(0.05)
                before = server.accepted
                start = trio.current_time()
                await server.restart()
                await server.wait_accepted(before + 1)
                found.append(server.accepted_at[-1] - start)
    return found


async def _reconnect_bare(runs: int) -> list[float]:
    """The hand-written loop: ``while True: try: connect; read except: sleep(backoff)``."""
    found: list[float] = []
    async with open_websocket_test_server() as server:

        async def client() -> None:
            while True:
                try:
                    async with trio_websocket.open_websocket_url(
                        server.url, connect_timeout=2, disconnect_timeout=0.05
                    ) as ws:
                        while True:
                            await ws.get_message()
                except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed):
                    await trio.sleep(RECONNECT_DELAY)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            for _ in range(runs):
                await server.wait_connected(1)
                await trio.sleep(0.05)
                before = server.accepted
                start = trio.current_time()
                await server.restart()
                await server.wait_accepted(before + 1)
                found.append(server.accepted_at[-1] - start)
            nursery.cancel_scope.cancel()
    return found


# ------------------------------------------------------------ every failure case


async def _case(behaviour: WebSocketServerBehaviour, **fields: Any) -> tuple[float, str]:
    """A start that fails: seconds from the start to the failure, and the failure."""
    async with open_websocket_test_server(behaviour) as server:
        worker = _worker(server.url, **fields)
        start = trio.current_time()
        try:
            async with supervisor.open_supervisor(_tree(worker), hooks=[]):
                pass
        except supervisor.FailedToStartChild as error:
            return trio.current_time() - start, repr(error.error)
    raise AssertionError("the start did not fail")


async def _cases(runs: int) -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []

    async def median_of(
        name: str, fault: Callable[[WebSocketTestServer], Awaitable[float]], **fields: Any
    ) -> None:
        times: list[float] = []
        failure: BaseException | None = None
        async with open_websocket_test_server() as server:
            for _ in range(runs):
                latency, failure = await _worker_detects(server, fault, **fields)
                times.append(latency)
        rows.append((name, statistics.median(times), repr(failure)))

    await median_of("close 1000", _close(1000, "idle"))
    await median_of("close 1001", _close(1001, "going away"))
    await median_of("close 1011", _close(1011, "server error"))
    await median_of("TCP FIN, no close frame", _drop(reset=False))
    await median_of("TCP RST, no close frame", _drop(reset=True))
    half_open = statistics.median(await _half_open_worker(runs))
    rows.append(
        (
            f"black hole (ping {PING_INTERVAL}+{PING_TIMEOUT} s)",
            half_open,
            repr(workers.HeartbeatTimeout(after=PING_TIMEOUT)),
        )
    )
    cases: list[tuple[str, WebSocketServerBehaviour, dict[str, Any]]] = [
        (
            "upgrade never answered (timeout 0.5 s)",
            WebSocketServerBehaviour(answer_upgrade=False),
            {"connect_timeout": 0.5},
        ),
        ("upgrade rejected 401", WebSocketServerBehaviour(reject_status=401), {}),
        ("upgrade rejected 503", WebSocketServerBehaviour(reject_status=503), {}),
    ]
    for name, behaviour, fields in cases:
        results = [await _case(behaviour, **fields) for _ in range(runs)]
        rows.append((name, statistics.median(t for t, _ in results), results[0][1]))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else 15
    polled_runs = 5 if args.quick else 9

    close_worker = trio.run(_close_worker, runs)
    close_recv = trio.run(_close_bare_recv, runs)
    close_polled = trio.run(_close_polled, polled_runs)
    half_open = trio.run(_half_open_worker, runs)
    bare_half_open = trio.run(_half_open_bare, 2.0)
    reconnect_worker = trio.run(_reconnect_worker, runs)
    reconnect_bare = trio.run(_reconnect_bare, runs)
    bound = PING_INTERVAL + PING_TIMEOUT
    reconnect_bound = RECONNECT_DELAY + 0.010

    print(f"medians of {runs} runs ({polled_runs} for the polled monitor); times in ms\n")
    print(f"{'measure':44} {'worker':>9} {'(max)':>9} {'baseline':>9} {'ratio':>8}  target")
    rows: list[tuple[str, list[float], list[float], str]] = [
        ("close frame: vs bare get_message()", close_worker, close_recv, "worker < 5 ms"),
        (f"close frame: vs polling closed every {POLL_PERIOD:g} s", close_worker, close_polled, ""),
        (f"half-open: vs bound interval+timeout {bound:g} s", half_open, [bound], "max <= 1.1 x"),
        ("reconnect after restart: vs hand loop", reconnect_worker, reconnect_bare, ""),
        (
            f"reconnect: vs bound backoff {RECONNECT_DELAY:g} s + 10 ms",
            reconnect_worker,
            [reconnect_bound],
            "ratio <= 1",
        ),
    ]
    for name, ours, base, target in rows:
        mid, top, other = statistics.median(ours), max(ours), statistics.median(base)
        print(
            f"{name:44} {mid * 1e3:9.2f} {top * 1e3:9.2f} {other * 1e3:9.2f} "
            f"{mid / other:8.3g}  {target}"
        )
    never = "not detected" if bare_half_open is None else f"{bare_half_open * 1e3:.1f} ms"
    print(f"\nhalf-open, trio-websocket alone (no heartbeat): {never} after 2 s")

    print(f"\n{'failure case':44} {'detected':>9}  reason")
    for name, latency, reason in trio.run(_cases, max(3, runs // 3)):
        print(f"{name:44} {latency * 1e3:9.2f}  {reason}")


if __name__ == "__main__":
    main()
