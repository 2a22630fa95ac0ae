"""Mass failure: thousands of children fail in the same instant, against hand-written loops.

``python -m benchmarks.bench_mass [--quick]`` prints, each beside a baseline measured in
the same process (medians of back-to-back pairs: 2 shared, noisy cores):

- all back after ``n`` simultaneous crashes with immediate restart, for static and
  dynamic supervisors and several intensity windows, against a hand-written
  ``while True: try/except`` loop per child;
- the same crash with ``Backoff(wait_initial=0.1, wait_jitter=1.0)``: how late each
  restart is against its scheduled time, and how the reconnects spread (the herd the
  server sees), against the hand loop sleeping the same jittered delays;
- one restart among ``big`` children, for each strategy (rest_for_one of the last
  child), with the intensity window full or empty, against a bare ``start_soon`` and a
  channel report.

The same mass failure through the real workers (WebSocket sessions, Pyrogram accounts)
is in ``benchmarks.bench_mass_workers``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
import trio.testing

import specs
import supervisor
from benchmarks.bench_core import _paired, _restart_latency_bare
from specs.policy import backoff_delay
from supervisor import events

JITTERED = specs.Backoff(wait_initial=0.1, wait_jitter=1.0, wait_max=5.0)

# ------------------------------------------------------------- all back after


class _Herd:
    """Children that each crash when ``go`` is set, then count themselves back."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.go = trio.Event()
        self.begun = 0
        self.back = trio.Event()
        self.crashed_at = 0.0

    def begin(self) -> trio.Event:
        self.begun += 1
        if self.begun == 2 * self.n:
            self.back.set()
        return self.go

    async def plain(self, *_: Any) -> None:
        # the next incarnations wait on the next event, which is never set
        await self.begin().wait()
        raise ConnectionError("server gone")

    async def handshake(
        self, *_: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self.plain()

    async def crash_all(self) -> float:
        """Crash every child; the time until all are running again."""
        await trio.testing.wait_all_tasks_blocked()
        assert self.begun == self.n, self.begun
        start = time.perf_counter()
        self.go.set()
        self.go = trio.Event()  # the next incarnations wait on this one
        await self.back.wait()
        return time.perf_counter() - start


async def _hand_loop_back(n: int) -> float:
    herd = _Herd(n)

    async def loop() -> None:
        while True:
            try:
                await herd.plain()
            except Exception:  # the hand-written loop users write
                continue

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(loop)
        elapsed = await herd.crash_all()
        nursery.cancel_scope.cancel()
    return elapsed


async def _supervised_back(
    n: int, *, dynamic: bool, handshake: bool = False, intensity: int, period: float
) -> float:
    herd = _Herd(n)
    start = herd.handshake if handshake else herd.plain
    if dynamic:
        template = specs.ChildSpec(id="w", start=start)
        dynamic_spec = specs.DynamicSupervisorSpec(
            template=template, intensity=intensity, period=period
        )
        async with supervisor.open_supervisor(dynamic_spec, hooks=[]) as pool:
            for _ in range(n):
                await pool.start_child()
            elapsed = await herd.crash_all()
            await pool.shutdown()
        return elapsed
    spec = specs.SupervisorSpec(
        children=[specs.ChildSpec(id=f"w{i}", start=start) for i in range(n)],
        intensity=intensity,
        period=period,
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        elapsed = await herd.crash_all()
        await sup.shutdown()
    return elapsed


# --------------------------------------------------------- backoff and jitter


class _Schedule:
    """When each child crashed, was due back and came back (trio's clock)."""

    def __init__(self) -> None:
        self.crashed = 0.0
        self.due: dict[str, float] = {}
        self.back: dict[str, float] = {}

    def hook(self, event: supervisor.Event) -> None:
        if isinstance(event, events.RestartScheduled):
            self.due[event.child] = event.time + event.delay

    def lateness(self) -> list[float]:
        return sorted(self.back[c] - self.due[c] for c in self.back)

    def spread(self) -> list[float]:
        return sorted(t - self.crashed for t in self.back.values())


async def _backoff_hand_loop(n: int, rng: random.Random) -> _Schedule:
    schedule = _Schedule()
    go = trio.Event()
    all_back = trio.Event()

    async def loop(name: str) -> None:
        failures = 0
        while True:
            if failures:
                schedule.back[name] = trio.current_time()
                if len(schedule.back) == n:
                    all_back.set()
            try:
                await go.wait()
                if failures:
                    await trio.sleep_forever()
                raise ConnectionError("server gone")
            except Exception:
                failures += 1
                delay = backoff_delay(JITTERED, failures, rng)
                schedule.due[name] = trio.current_time() + delay
                await trio.sleep(delay)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(loop, f"w{i}")
        await trio.testing.wait_all_tasks_blocked()
        schedule.crashed = trio.current_time()
        go.set()
        await all_back.wait()
        nursery.cancel_scope.cancel()
    return schedule


async def _backoff_supervised(n: int, rng: random.Random) -> _Schedule:
    schedule = _Schedule()
    go = trio.Event()
    all_back = trio.Event()

    async def child() -> None:
        me = supervisor.current_child()
        if me.incarnation > 1:
            schedule.back[me.id] = trio.current_time()
            if len(schedule.back) == n:
                all_back.set()
            await trio.sleep_forever()
        await go.wait()
        raise ConnectionError("server gone")

    spec = specs.SupervisorSpec(
        children=[specs.ChildSpec(id=f"w{i}", start=child) for i in range(n)],
        intensity=2 * n,
        period=5,
        backoff=JITTERED,
    )
    async with supervisor.open_supervisor(spec, hooks=[schedule.hook], rng=rng) as sup:
        await trio.testing.wait_all_tasks_blocked()
        schedule.crashed = trio.current_time()
        go.set()
        await all_back.wait()
        await sup.shutdown()
    return schedule


def _quantiles(values: list[float], qs: tuple[float, ...]) -> list[float]:
    return [values[min(len(values) - 1, int(q * len(values)))] for q in qs]


def _peak_rate(times: list[float], bucket: float = 0.05) -> float:
    """The most attempts in any ``bucket`` seconds, per second (the herd the server sees)."""
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t / bucket)] = counts.get(int(t / bucket), 0) + 1
    return max(counts.values()) / bucket


# -------------------------------------------------------- one restart among N


class _Cue:
    """One child among many that, once ready, crashes on a cue."""

    def __init__(self) -> None:
        self.ready = trio.Event()
        self.cue = trio.Event()

    async def plain(self, *_: Any) -> None:
        self.cue = trio.Event()
        self.ready.set()
        await self.cue.wait()
        raise RuntimeError("crash")

    async def handshake(
        self, *_: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self.plain()

    async def restarts(self, count: int) -> float:
        await self.ready.wait()
        start = time.perf_counter()
        for _ in range(count):
            self.ready = trio.Event()
            self.cue.set()
            await self.ready.wait()
        return (time.perf_counter() - start) / count


async def _idle(*_: Any) -> None:
    await trio.sleep_forever()


async def _one_among(
    n: int, strategy: specs.Strategy, *, handshake: bool, full_window: bool, count: int = 200
) -> float:
    cue = _Cue()
    start = cue.handshake if handshake else cue.plain
    children = [specs.ChildSpec(id=f"w{i}", start=_idle) for i in range(n - 1)]
    children.append(specs.ChildSpec(id="last", start=start))
    # a full window holds every restart (the old tuple cost O(restarts)); an empty one none
    count = 2_000 if full_window else count
    intensity, period = (count + 1, 1e9) if full_window else (count + 1, 1e-9)
    spec = specs.SupervisorSpec(
        children=children, strategy=strategy, intensity=intensity, period=period
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        elapsed = await cue.restarts(count)
        await sup.shutdown()
    return elapsed


# ---------------------------------------------------------------------- table


def _run(main: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        result: float = trio.run(main)
        return result

    return run


def _print(rows: list[tuple[str, tuple[float, float, float], str]], baseline: str) -> None:
    print(f"{'measure':52} {'supervised':>11} {baseline:>11} {'ratio':>7}  target")
    for name, (ours, base, ratio), target in rows:
        print(f"{name:52} {ours:11.4g} {base:11.4g} {ratio:7.2f}  {target}")


def main(argv: list[str] | None = None) -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller sizes")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 5
    n = 2_000 if args.quick else 10_000
    big = 10_000 if args.quick else 100_000

    print(f"## {n:,} children crash at once, restart at once: all back in (s)")
    hand = lambda: trio.run(_hand_loop_back, n)  # noqa: E731
    cases: list[tuple[str, dict[str, Any]]] = [
        ("static, window ~1 restart", {"dynamic": False, "intensity": 100, "period": 1e-9}),
        ("static, intensity=2n, period=5", {"dynamic": False, "intensity": 2 * n, "period": 5}),
        ("dynamic, intensity=2n, period=5", {"dynamic": True, "intensity": 2 * n, "period": 5}),
        (
            "static, task_status children (through the loop)",
            {"dynamic": False, "handshake": True, "intensity": 2 * n, "period": 5},
        ),
    ]
    rows = [
        (
            name,
            _paired(runs, _run(partial(_supervised_back, n, **kw)), hand),
            "within 2x" if "loop)" not in name else "(reported)",
        )
        for name, kw in cases
    ]
    _print(rows, "hand loop")

    print(f"\n## {n:,} crash at once, Backoff(wait_initial=0.1, wait_jitter=1.0)")
    ours = [trio.run(_backoff_supervised, n, random.Random(i)) for i in range(max(1, runs // 2))]
    hands = [trio.run(_backoff_hand_loop, n, random.Random(i)) for i in range(max(1, runs // 2))]
    qs = (0.5, 0.9, 0.99, 1.0)
    print(f"{'':24} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms late; target <= 10)")
    for name, runs_of in (("supervised", ours), ("hand loop", hands)):
        late = sorted(x for s in runs_of for x in s.lateness())
        cells = " ".join(f"{q * 1e3:8.2f}" for q in _quantiles(late, qs))
        print(f"{name + ' lateness':24} {cells}")
    print(f"{'':24} {'p10':>8} {'p50':>8} {'p90':>8} {'peak/s':>8}  (reconnect s after crash)")
    for name, runs_of in (("supervised", ours), ("hand loop", hands)):
        spread = sorted(x for s in runs_of for x in s.spread())
        cells = " ".join(f"{q:8.3f}" for q in _quantiles(spread, (0.1, 0.5, 0.9)))
        peak = statistics.median(_peak_rate(s.spread()) for s in runs_of)
        print(f"{name + ' spread':24} {cells} {peak:8.0f}")

    print(f"\n## one restart among {big:,} (s per restart)")
    # a bare start_soon per restart, each exit reported over a memory channel
    bare = lambda: trio.run(_restart_latency_bare, 200)  # noqa: E731
    strategies = [
        ("one_for_one", specs.ONE_FOR_ONE),
        ("rest_for_one, the last child", specs.REST_FOR_ONE),
    ]
    rows = []
    for label, strategy in strategies:
        for handshake in (False, True):
            for full in (False, True):
                name = (
                    f"{label}, {'task_status' if handshake else 'plain'}, "
                    f"window {'full' if full else 'empty'}"
                )

                def ours_one(
                    strategy: specs.Strategy = strategy,
                    handshake: bool = handshake,
                    full: bool = full,
                ) -> float:
                    return trio.run(
                        partial(_one_among, big, strategy, handshake=handshake, full_window=full)
                    )

                rows.append((name, _paired(max(1, runs - 4), ours_one, bare), "within 2x"))
    _print(rows, "start_soon")

    print("ratios: medians of back-to-back pairs; 2 shared cores, expect noise")


if __name__ == "__main__":
    main()
