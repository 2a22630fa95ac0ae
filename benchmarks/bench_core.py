"""Core supervision overheads, as ratios against bare trio in the same process.

``python -m benchmarks.bench_core [--quick]`` prints a table: each figure is the
median of several runs (2 shared cores: medians, not single runs).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

import trio
import trio.lowlevel
import trio.testing

import specs
import supervisor
import supervisor.events

# ------------------------------------------------------------ restart latency


class _Crasher:
    """A child that, once ready, waits for a cue and crashes."""

    def __init__(self) -> None:
        self.ready = trio.Event()
        self.cue = trio.Event()

    async def __call__(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.cue = trio.Event()
        task_status.started()
        self.ready.set()
        await self.cue.wait()
        raise RuntimeError("crash")


async def _restart_latency_supervised(n: int) -> float:
    crasher = _Crasher()
    spec = specs.SupervisorSpec(
        children=[specs.ChildSpec(id="c", start=crasher)], intensity=n + 1, period=1e-9
    )
    async with supervisor.open_supervisor(spec, hooks=[]):
        await crasher.ready.wait()
        start = time.perf_counter()
        for _ in range(n):
            crasher.ready = trio.Event()
            crasher.cue.set()
            await crasher.ready.wait()
        return (time.perf_counter() - start) / n


async def _restart_latency_bare(n: int, *, stoppable: bool = False) -> float:
    """A hand-written restart loop reporting each exit over a memory channel.

    With ``stoppable``, each incarnation runs in its own cancel scope, the
    least a loop needs to stop one child without its siblings (and what a
    supervisor must have); without, it is the bare minimum.
    """
    crasher = _Crasher()
    send, receive = trio.open_memory_channel[BaseException](0)
    scopes: list[trio.CancelScope] = []

    async def guarded() -> None:
        try:
            if stoppable:
                with trio.CancelScope() as scope:
                    scopes[:] = [scope]
                    await crasher()
            else:
                await crasher()
        except Exception as error:
            await send.send(error)

    async def restarter(nursery: trio.Nursery) -> None:
        async for _ in receive:
            nursery.start_soon(guarded)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restarter, nursery)
        nursery.start_soon(guarded)
        await crasher.ready.wait()
        start = time.perf_counter()
        for _ in range(n):
            crasher.ready = trio.Event()
            crasher.cue.set()
            await crasher.ready.wait()
        elapsed = (time.perf_counter() - start) / n
        nursery.cancel_scope.cancel()
    return elapsed


# ------------------------------------------------------------- start/shutdown


async def _sleeper(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


def _wide_spec(n: int) -> specs.SupervisorSpec:
    return specs.SupervisorSpec(
        children=[specs.ChildSpec(id=f"c{i}", start=_sleeper) for i in range(n)]
    )


async def _start_stop_supervised(n: int) -> tuple[float, float]:
    spec = _wide_spec(n)
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        handle = await nursery.start(
            lambda task_status: supervisor.run_supervisor(spec, hooks=[], task_status=task_status)
        )
        started = time.perf_counter() - start
        start = time.perf_counter()
        await handle.shutdown()
        stopped = time.perf_counter() - start
    return started, stopped


async def _start_stop_bare(n: int) -> tuple[float, float]:
    scopes: list[trio.CancelScope] = []

    async def child(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            task_status.started()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for _ in range(n):
            await nursery.start(child)
        started = time.perf_counter() - start
        start = time.perf_counter()
        # the fair baseline for an ordered shutdown: one at a time, newest first
        for scope in reversed(scopes):
            scope.cancel()
            await trio.lowlevel.checkpoint()
    stopped = time.perf_counter() - start
    return started, stopped


# --------------------------------------------------------------------- memory


def _gc_objects_per_child(n: int, supervised: bool) -> float:
    """GC-tracked objects per idle child (what a full collection walks)."""
    return _memory_per_child(n, supervised, measure=lambda: len(gc.get_objects()))


def _memory_per_child(n: int, supervised: bool, measure: Callable[[], int] | None = None) -> float:
    def traced() -> int:
        return tracemalloc.get_traced_memory()[0]

    used_now = measure or traced

    async def main() -> float:
        gc.collect()
        if measure is None:
            tracemalloc.start()
        before = used_now()
        async with trio.open_nursery() as nursery:
            if supervised:
                spec = specs.DynamicSupervisorSpec(template=specs.ChildSpec(id="w", start=_sleeper))
                handle = await nursery.start(
                    lambda task_status: supervisor.run_supervisor(
                        spec, hooks=[], task_status=task_status
                    )
                )
                for _ in range(n):
                    await handle.start_child()
            else:
                for _ in range(n):
                    await nursery.start(_sleeper)
            gc.collect()
            used = used_now() - before
            nursery.cancel_scope.cancel()
        if measure is None:
            tracemalloc.stop()
        return used / n

    return trio.run(main)


# ------------------------------------------------------- report throughput


async def _reports_supervised(n: int) -> float:
    """Exit reports per second: ``n`` children exit at once; the loop handles each report."""
    go, done = trio.Event(), trio.Event()
    handled = 0

    async def waits() -> None:
        await go.wait()

    def count(event: supervisor.Event) -> None:
        nonlocal handled
        if isinstance(event, supervisor.events.ChildExited):
            handled += 1
            if handled == n:
                done.set()

    spec = specs.DynamicSupervisorSpec(
        template=specs.ChildSpec(id="t", start=waits, restart=specs.TEMPORARY)
    )
    async with supervisor.open_supervisor(spec, hooks=[count]) as sup:
        for _ in range(n):
            await sup.start_child()
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        go.set()
        await done.wait()
        return n / (time.perf_counter() - start)


async def _reports_bare(n: int) -> float:
    """The same ``n`` exits as bare messages over a memory channel to one consumer."""
    go = trio.Event()
    send, receive = trio.open_memory_channel[int](float("inf"))

    async def waits(i: int) -> None:
        await go.wait()
        send.send_nowait(i)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(waits, i)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        go.set()
        for _ in range(n):
            await receive.receive()
        return n / (time.perf_counter() - start)


# ---------------------------------------------------------------------- scale


async def _sleeper_or(
    crasher: _Crasher | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    if crasher is not None:
        await crasher(task_status)
        return
    task_status.started()
    await trio.sleep_forever()


async def _one_restart_among(n: int, restarts: int = 50) -> tuple[float, float]:
    """Mean restart time of one child among ``n``, and the time of one snapshot()."""
    crasher = _Crasher()
    spec = specs.DynamicSupervisorSpec(
        template=specs.ChildSpec(id="w", start=_sleeper_or), intensity=restarts + 1, period=1e-9
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        for _ in range(n - 1):
            await sup.start_child()
        await sup.start_child(crasher)
        start = time.perf_counter()
        for _ in range(restarts):
            crasher.ready = trio.Event()
            crasher.cue.set()
            await crasher.ready.wait()
        elapsed = (time.perf_counter() - start) / restarts
        start = time.perf_counter()
        sup.snapshot()
        return elapsed, time.perf_counter() - start


def _paired(
    runs: int, ours: Callable[[], float], base: Callable[[], float]
) -> tuple[float, float, float]:
    """Medians of both, and the median of per-pair ratios.

    Each pair is measured back to back, so load on the shared machine hits
    both alike.
    """
    pairs = [(ours(), base()) for _ in range(runs)]
    return (
        statistics.median(o for o, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(o / b for o, b in pairs),
    )


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller sizes")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 7
    wide = 2_000 if args.quick else 10_000
    big = 10_000 if args.quick else 100_000
    rows: list[tuple[str, tuple[float, float, float], str]] = []

    rows.append(
        (
            "restart latency, one_for_one (s)",
            _paired(
                runs,
                lambda: trio.run(_restart_latency_supervised, 1000),
                lambda: trio.run(_restart_latency_bare, 1000),
            ),
            "within 2x",
        )
    )
    rows.append(
        (
            "  vs a loop that can stop one child (s)",
            _paired(
                runs,
                lambda: trio.run(_restart_latency_supervised, 1000),
                lambda: trio.run(partial(_restart_latency_bare, 1000, stoppable=True)),
            ),
            "within 2x",
        )
    )
    starts: list[tuple[float, float]] = []
    bares: list[tuple[float, float]] = []

    def start_ours() -> float:
        starts.append(trio.run(_start_stop_supervised, wide))
        return starts[-1][0]

    def start_bare() -> float:
        bares.append(trio.run(_start_stop_bare, wide))
        return bares[-1][0]

    rows.append(
        (f"start {wide:,} children (s)", _paired(runs, start_ours, start_bare), "within 1.5x")
    )
    stop_pairs = [(o[1], b[1]) for o, b in zip(starts, bares, strict=True)]
    rows.append(
        (
            f"ordered shutdown of {wide:,} (s)",
            (
                statistics.median(o for o, _ in stop_pairs),
                statistics.median(b for _, b in stop_pairs),
                statistics.median(o / b for o, b in stop_pairs),
            ),
            "within 2x",
        )
    )
    n_mem = 2_000 if args.quick else 10_000
    rows.append(
        (
            "memory per idle child (bytes)",
            _paired(
                runs,
                lambda: _memory_per_child(n_mem, True),
                lambda: _memory_per_child(n_mem, False),
            ),
            "within 1.5x",
        )
    )
    rows.append(
        (
            "GC-tracked objects per idle child",
            _paired(
                1,
                lambda: _gc_objects_per_child(n_mem, True),
                lambda: _gc_objects_per_child(n_mem, False),
            ),
            "(reported)",
        )
    )
    rows.append(
        (
            "exit reports per second",
            _paired(
                runs,
                lambda: trio.run(_reports_supervised, 5_000),
                lambda: trio.run(_reports_bare, 5_000),
            ),
            "(throughput, reported)",
        )
    )
    snapshots: dict[int, list[float]] = {10: [], big: []}

    def restart_among(n: int) -> float:
        elapsed, snapshot = trio.run(_one_restart_among, n)
        snapshots[n].append(snapshot)
        return elapsed

    rows.append(
        (
            f"one restart among {big:,} vs among 10 (s)",
            _paired(3, lambda: restart_among(big), lambda: restart_among(10)),
            "the same (1.0)",
        )
    )

    print(f"{'measure':42} {'supervised':>12} {'baseline':>12} {'ratio':>7}  target")
    for name, (ours, base, ratio), target in rows:
        print(f"{name:42} {ours:12.4g} {base:12.4g} {ratio:7.2f}  {target}")
    snap_small = statistics.median(snapshots[10])
    snap_large = statistics.median(snapshots[big])
    print(
        f"snapshot(): {snap_small * 1e3:.3f} ms with 10 children, {snap_large * 1e3:.1f} ms with "
        f"{big:,} ({snap_large / big * 1e6:.2f} us per child: linear)"
    )
    print("ratios: medians of back-to-back pairs; 2 shared cores, expect noise")


if __name__ == "__main__":
    main()
