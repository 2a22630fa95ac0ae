"""The long-polling worker against a bare httpx loop, on one loopback Bot API server.

``python -m benchmarks.bench_polling [--quick] [--restarts N]`` prints:

- per-update cost of the supervised :class:`~workers._polling.PollingLoopWorker`
  (typed failures, stale-connection tracing, shielded offset saves, handler
  retry bookkeeping) against a hand-written ``httpx`` ``getUpdates`` loop doing
  the same requests on the same server, in the same process: one update per
  poll (``limit=1``: the per-request path) and 100 per poll (the batch path);
- updates per second through one poller;
- what a :class:`~workers._polling.FileOffsetStore` costs per update (limit=100),
  written after each update or once per poll (``SaveOffset``);
- hostile peers: the time to rotate off a proxy that takes connections but never
  answers the tunnel request (HTTP ``CONNECT`` and SOCKS5), against the same
  worker through the good proxy alone, as a multiple of ``connect_timeout`` (the
  value that bounds it); and the memory an endless ``getUpdates`` body costs
  (``tracemalloc`` peak while it is read until ``max_response_bytes``);
- memory over many restarts: each incarnation opens its clients, polls, gets a
  500 and is restarted at once; open file descriptors (``/proc/self/fd``),
  live trio tasks, live ``httpx.AsyncClient`` objects and RSS are compared
  after a warm-up and at the end.

Figures are medians of several runs, each pair run back to back; the machine
has 2 shared cores, so read ratios, not absolute times. Time is read through
trio's clock.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

import specs
import supervisor
import workers
from supervisor import events
from workers._polling import (
    FileOffsetStore,
    OffsetStore,
    PollingConfig,
    PollingLoopWorker,
    SaveOffset,
    Update,
)
from workers.testing import (
    BotApiFault,
    BotApiServer,
    loopback_client_ssl_context,
    open_botapi_server,
    open_connect_proxy,
)

POLL_TIMEOUT = 5.0


# ------------------------------------------------------------ per-update overhead


class _Counter:
    """The same trivial handler for both loops: count, and note the times of the first and last."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = trio.Event()

    async def __call__(self, update: Update) -> None:
        self.count += 1
        if self.count == 1:
            self.first = trio.current_time()
        if self.count == self.total:
            self.last = trio.current_time()
            self.done.set()

    def per_update(self) -> float:
        """Seconds per update, from the first handled to the last (startup excluded)."""
        return (self.last - self.first) / (self.total - 1)


async def _bare_loop(server: BotApiServer, handler: _Counter, limit: int) -> None:
    """What people write by hand: one client, poll, handle, move the offset."""
    timeout = httpx.Timeout(5.0, read=POLL_TIMEOUT + 1.0, pool=1.0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    url = server.method_url("getUpdates")
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        offset: int | None = None
        while handler.count < handler.total:
            params: dict[str, Any] = {"timeout": int(POLL_TIMEOUT), "limit": limit}
            if offset is not None:
                params["offset"] = offset
            response = await client.get(url, params=params)
            response.raise_for_status()
            for update in response.json()["result"]:
                await handler(update)
                offset = update["update_id"] + 1


async def _worker_loop(
    server: BotApiServer,
    handler: _Counter,
    limit: int,
    offsets: OffsetStore | None = None,
    save: SaveOffset = SaveOffset.EACH_UPDATE,
) -> None:
    config = PollingConfig(
        url=server.method_url("getUpdates"),
        poll_timeout=POLL_TIMEOUT,
        read_margin=1.0,
        limit=limit,
        save_offset=save,
    )
    worker = PollingLoopWorker(config, handler, offsets=offsets, registry=workers.Registry())
    spec = specs.SupervisorSpec(children=[worker.child_spec("poller")])
    async with supervisor.open_supervisor(spec, hooks=[]):
        await handler.done.wait()


async def _measure(
    total: int, limit: int, loop: Callable[[BotApiServer, _Counter, int], Awaitable[None]]
) -> float:
    async with open_botapi_server(history=0) as server:
        server.push_many(total)
        handler = _Counter(total)
        with trio.fail_after(600):
            await loop(server, handler, limit)
        return handler.per_update()


def _paired(
    runs: int, ours: Callable[[], float], base: Callable[[], float]
) -> tuple[float, float, float]:
    """Medians of ours, of the baseline, and of their ratio, over back-to-back pairs."""

    def clean(measure: Callable[[], float]) -> float:
        gc.collect()  # no run pays for the garbage of the one before
        return measure()

    pairs = []
    for index in range(runs):
        if index % 2:  # alternate the order so that drift does not favour one side
            b, o = clean(base), clean(ours)
        else:
            o, b = clean(ours), clean(base)
        pairs.append((o, b))
    return (
        statistics.median(o for o, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(o / b for o, b in pairs),
    )


def _per_update(total: int, limit: int, runs: int) -> tuple[float, float, float]:
    return _paired(
        runs,
        lambda: trio.run(_measure, total, limit, _worker_loop),
        lambda: trio.run(_measure, total, limit, _bare_loop),
    )


def _file_store_cost(
    total: int, runs: int, fsync: bool, save: SaveOffset
) -> tuple[float, float, float]:
    async def with_file(server: BotApiServer, handler: _Counter, limit: int) -> None:
        with tempfile.TemporaryDirectory() as directory:
            store = FileOffsetStore(os.path.join(directory, "offset"), fsync=fsync)
            await _worker_loop(server, handler, limit, store, save)

    return _paired(
        runs,
        lambda: trio.run(_measure, total, 100, with_file),
        lambda: trio.run(_measure, total, 100, _worker_loop),
    )


# ------------------------------------------------------------ memory over restarts


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _clients() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, httpx.AsyncClient))


class _Sample:
    def __init__(self, restarts: int) -> None:
        gc.collect()
        self.restarts = restarts
        self.time = trio.current_time()
        self.fds = _fds()
        self.tasks = trio.lowlevel.current_statistics().tasks_living
        self.clients = _clients()
        self.rss = _rss_kib()


async def _restarts(total: int, warmup: int) -> tuple[_Sample, _Sample]:
    """Restart a poller ``warmup + total`` times; sample after the warm-up and at the end."""
    marks = {warmup: trio.Event(), warmup + total: trio.Event()}
    count = 0

    def hook(event: supervisor.Event) -> None:
        nonlocal count
        if type(event).__name__ == "ChildRestarted":
            count += 1
            if count in marks:
                marks[count].set()

    async with open_botapi_server(history=0) as server:
        server.inject(BotApiFault.error(500, times=None))
        config = PollingConfig(url=server.method_url("getUpdates"), poll_timeout=POLL_TIMEOUT)
        worker = PollingLoopWorker(config, _Counter(1), registry=workers.Registry())
        # restart at once, for ever: the point is the churn
        spec = specs.SupervisorSpec(
            children=[worker.child_spec("poller")], intensity=10**9, period=1
        )
        async with supervisor.open_supervisor(spec, hooks=[hook]):
            await marks[warmup].wait()
            # let the incarnation that just started settle as the final one will
            await trio.sleep(0.05)
            before = _Sample(count)
            await marks[warmup + total].wait()
            await trio.sleep(0.05)
            after = _Sample(count)
    return before, after


# ------------------------------------------------------------ hostile peers

CONNECT_TIMEOUT = 0.5


async def _first_update_through(scheme: str, stalled_first: bool) -> float:
    """Seconds from the start of a tree to the first update handled through the good proxy."""
    async with (
        open_botapi_server(tls=True) as server,
        open_connect_proxy() as stalled,
        open_connect_proxy() as good,
    ):
        stalled.stall_handshake = True
        urls = [stalled.url_for(scheme), good.url_for(scheme)]
        handled = trio.Event()

        async def handler(update: Update) -> None:
            handled.set()

        worker = PollingLoopWorker(
            PollingConfig(
                url=server.method_url("getUpdates"),
                poll_timeout=POLL_TIMEOUT,
                connect_timeout=CONNECT_TIMEOUT,
                proxies=urls if stalled_first else urls[1:],
                verify=loopback_client_ssl_context(),
            ),
            handler,
            registry=workers.Registry(),
        )
        server.push()
        spec = specs.SupervisorSpec(children=[worker.child_spec("p")], intensity=100, period=1)
        start = trio.current_time()
        async with supervisor.open_supervisor(spec, hooks=[]):
            with trio.fail_after(30):
                await handled.wait()
        return trio.current_time() - start


def _rotation(scheme: str, runs: int) -> tuple[float, float, float]:
    """(through a stalled proxy first, good proxy alone, extra time / connect_timeout)."""
    stalled = statistics.median(trio.run(_first_update_through, scheme, True) for _ in range(runs))
    alone = statistics.median(trio.run(_first_update_through, scheme, False) for _ in range(runs))
    return stalled, alone, (stalled - alone) / CONNECT_TIMEOUT


async def _endless_body_peak(cap: int) -> tuple[int, int]:
    """(tracemalloc peak in bytes while an endless answer is read to ``cap``, bytes served)."""
    async with open_botapi_server() as server:
        fault = server.inject(BotApiFault.huge_body(None))
        done = trio.Event()

        async def handler(update: Update) -> None:
            await trio.lowlevel.checkpoint()

        def hook(event: Any) -> None:
            if isinstance(event, events.ChildExited):
                done.set()

        worker = PollingLoopWorker(
            PollingConfig(url=server.method_url("getUpdates"), max_response_bytes=cap),
            handler,
            registry=workers.Registry(),
        )
        spec = specs.SupervisorSpec(children=[worker.child_spec("p", restart=specs.TEMPORARY)])
        tracemalloc.start()
        try:
            async with supervisor.open_supervisor(spec, hooks=[hook]):
                with trio.fail_after(60):
                    await done.wait()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak, fault.bytes_sent


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller sizes")
    parser.add_argument("--restarts", type=int, default=None, help="restarts to measure")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 7
    single = 500 if args.quick else 2_000
    batched = 5_000 if args.quick else 20_000
    restarts = args.restarts or (1_000 if args.quick else 10_000)

    each, batch = SaveOffset.EACH_UPDATE, SaveOffset.EACH_POLL
    rows = [
        (f"limit=1: {single:,} polls, s/update", _per_update(single, 1, runs), "< 1.2x"),
        (f"limit=100: {batched:,} updates, s/update", _per_update(batched, 100, runs), "< 1.2x"),
        (
            "file store, no fsync, each update",
            _file_store_cost(single, runs, False, each),
            "(cost)",
        ),
        ("file store, fsync, each update", _file_store_cost(single, 3, True, each), "(cost)"),
        ("file store, fsync, each poll", _file_store_cost(batched, runs, True, batch), "(cost)"),
    ]
    print(f"{'measure':42} {'worker':>12} {'baseline':>12} {'ratio':>7}  target")
    for name, (ours, base, ratio), target in rows:
        print(f"{name:42} {ours:12.4g} {base:12.4g} {ratio:7.2f}  {target}")
    print(
        f"throughput, one poller: {1 / rows[0][1][0]:,.0f} updates/s at limit=1, "
        f"{1 / rows[1][1][0]:,.0f} updates/s at limit=100 "
        f"(bare httpx: {1 / rows[0][1][1]:,.0f} and {1 / rows[1][1][1]:,.0f})"
    )
    print("baseline: a hand-written httpx loop; file-store rows: the worker with a memory store")

    print()
    print(f"{'hostile peers':42} {'worker':>12} {'baseline':>12} {'ratio':>7}  target")
    for scheme in ("http", "socks5"):
        stalled, alone, ratio = _rotation(scheme, 3)
        name = f"rotate off a stalled {scheme} proxy, s"
        print(f"{name:42} {stalled:12.4g} {alone:12.4g} {ratio:7.2f}  ~1 x connect_timeout")
    print(
        "(baseline: the good proxy alone; ratio: the extra time / "
        f"connect_timeout={CONNECT_TIMEOUT})"
    )
    for cap in (1 << 20, 16 << 20):
        peak, served = trio.run(_endless_body_peak, cap)
        print(
            f"endless body, max_response_bytes={cap >> 20} MiB: tracemalloc peak "
            f"{peak / 2**20:.1f} MiB ({peak / cap:.2f}x the cap), {served / 2**20:.1f} MiB served"
        )

    before, after = trio.run(_restarts, restarts, 200)
    elapsed = after.time - before.time
    print()
    print(
        f"{restarts:,} restarts (after 200 warm-up) in {elapsed:.1f} s "
        f"({elapsed / restarts * 1e3:.2f} ms per restart: new clients, connect, 500, exit)"
    )
    print(f"{'':24} {'after warm-up':>14} {'at the end':>12} {'change':>8}")
    for name, first, last in (
        ("open file descriptors", before.fds, after.fds),
        ("live trio tasks", before.tasks, after.tasks),
        ("live httpx.AsyncClient", before.clients, after.clients),
        ("RSS (KiB)", before.rss, after.rss),
    ):
        print(f"{name:24} {first:14,} {last:12,} {last - first:+8,}")


if __name__ == "__main__":
    main()
