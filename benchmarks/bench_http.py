"""Restart latency while /tree and /metrics are flooded, against the same tree idle.

``python -m benchmarks.bench_http [--quick] [--children N]`` runs one tree of
N sleepers (20,000; 2,000 with ``--quick``) plus one child that crashes on
cue, serves it over HTTP, and measures each restart (crash to ready again):
idle, then while another process floods /tree and /metrics, first against a
server that builds both bodies on every request (how it was), then against
the one ``run --http`` serves. Each figure is printed beside the idle
baseline of the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

import trio

import specs
import supervisor
from benchmarks.bench_core import _Crasher, _sleeper
from supervisor._health import HealthApp, Metrics, Receive, Scope, Send, serve_health

# the flood: a few clients, each asking for /tree and /metrics back to back
_FLOOD = textwrap.dedent(
    """
    import sys, threading, httpx
    base, clients = sys.argv[1], int(sys.argv[2])
    def hammer(path):
        with httpx.Client(base_url=base, timeout=None) as client:
            while True:
                client.get(path)
    for index in range(clients):
        path = "/tree" if index % 2 == 0 else "/metrics"
        threading.Thread(target=hammer, args=(path,), daemon=True).start()
    print("flooding", flush=True)
    sys.stdin.read()  # until the benchmark closes it, or dies
    """
)


class _EveryRequest(HealthApp):
    """The server as it was: both bodies built in one go, on every request, unpaced."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._answer(scope, send)
        else:
            await super().__call__(scope, receive, send)

    async def respond(self, scope: Scope) -> tuple[int, str, bytes]:
        assert self.handle is not None
        if scope["path"] == "/tree":
            return 200, "application/json", json.dumps(self.handle.snapshot().to_dict()).encode()
        if scope["path"] == "/metrics":
            return 200, "text/plain", self.metrics.exposition()
        return await super().respond(scope)


async def _restarts(crasher: _Crasher, count: int) -> list[float]:
    """Each of ``count`` restarts' latency in seconds, spaced by a millisecond."""
    latencies = []
    for _ in range(count):
        await trio.sleep(0.001)
        crasher.ready = trio.Event()
        start = time.perf_counter()
        crasher.cue.set()
        await crasher.ready.wait()
        latencies.append(time.perf_counter() - start)
    return latencies


async def _flooded(
    app: HealthApp, crasher: _Crasher, count: int, clients: int
) -> tuple[list[float], int]:
    """Restart latencies while ``clients`` flood ``app``; and how many requests it answered."""
    answered = 0
    inner = app.respond

    async def counting(scope: Scope) -> tuple[int, str, bytes]:
        nonlocal answered
        answer = await inner(scope)
        answered += 1
        return answer

    app.respond = counting  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_health, app, "127.0.0.1", 0)
        flood = await trio.lowlevel.open_process(
            [sys.executable, "-c", _FLOOD, f"http://127.0.0.1:{port}", str(clients)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert flood.stdout is not None
            await flood.stdout.receive_some()
            # the flood under way, and each body built once (the cached server then
            # rebuilds only every max_age, or 100 times as long as a build took)
            await trio.sleep(1)
            if not isinstance(app, _EveryRequest):
                await app.tree.get()
                await app.exposition.get()
            latencies = await _restarts(crasher, count)
        finally:
            flood.kill()
            await flood.wait()
        nursery.cancel_scope.cancel()
    return latencies, answered


def _p99(latencies: Sequence[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def _main(children: int, count: int, clients: int) -> None:
    crasher = _Crasher()
    spec = specs.SupervisorSpec(
        children=[
            *(specs.ChildSpec(id=f"s{i}", start=_sleeper) for i in range(children)),
            specs.ChildSpec(id="crasher", start=crasher),
        ],
        intensity=10 * count,
        period=1e-9,
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await crasher.ready.wait()
        idle = await _restarts(crasher, count)
        rows = [("idle (server up, no requests)", idle, 0)]
        before = _EveryRequest(sup, Metrics(sup))
        rows.append(
            (
                "flood, built on every request (before)",
                *await _flooded(before, crasher, count, clients),
            )
        )
        after = HealthApp(sup, Metrics(sup))
        rows.append(
            (
                "flood, cached and built in steps (now)",
                *await _flooded(after, crasher, count, clients),
            )
        )
    base = _p99(idle)
    print(f"restart latency, {children} children, {count} restarts, {clients} flood clients")
    print(f"{'':42} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/idle':>9} {'answered':>9}")
    for name, latencies, answered in rows:
        p99, median, worst = _p99(latencies), statistics.median(latencies), max(latencies)
        print(
            f"{name:42} {median * 1e3:8.2f} {p99 * 1e3:8.2f} {worst * 1e3:8.2f}"
            f" {p99 / base:8.1f}x {answered:9d}"
        )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_http", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller tree, fewer restarts")
    parser.add_argument("--children", type=int, default=None, help="sleepers in the tree")
    parser.add_argument("--clients", type=int, default=4, help="flooding clients")
    args = parser.parse_args(argv)
    children = args.children if args.children is not None else (2_000 if args.quick else 20_000)
    trio.run(_main, children, 300 if args.quick else 2_000, args.clients)


if __name__ == "__main__":
    main()
