"""The Pyrogram client worker against bare Pyrogram clients, on the loopback MTProto server.

``python -m benchmarks.bench_pyrogram [--quick] [--runs N]`` prints:

- dead-link detection: the server black-holes the connections of supervised
  :class:`~workers._pyrogram.PyrogramClientWorker` accounts (heartbeat
  ``ping_interval=5, ping_timeout=1.5``, the defaults; and ``ping_interval=1``) and of
  bare Pyrogram clients at the same moment; seconds until the worker exits with
  ``HeartbeatTimeout``, against seconds until Pyrogram's own read timeout notices
  (its ``DisconnectHandler`` fires; Pyrogram then reconnects by itself, forever);
- restart time of one account: from ``worker.fail(...)`` to the next incarnation
  connected and authorised (the supervisor's ``ChildRestarted``), against a
  hand-written restart of a bare client doing the same steps (stop, leave its loop,
  new loop, new client, ``connect``, ``get_me``, ``initialize``) and against a bare
  client reconnecting on its own loop (no new loop, no new client). Measured twice:
  Pyrogram's SQLite storage calls ``inspect.stack()`` on every access, and under
  ``python -m`` each call rescans ``sys.modules`` for the ``<frozen runpy>`` frames
  (``inspect.getmodule`` cannot cache them), which makes a connect cost ~200 ms
  instead of ~25 ms and drowns what the worker adds; so the restart is measured with
  those frames registered in ``inspect``'s cache, then as it runs;
- memory per idle account (``tracemalloc``, after a warm-up): accounts of an
  :func:`~workers._pyrogram.account_pool` (worker, its supervisor, its own loop),
  against bare connected clients each on its own bridged loop, and bare clients
  sharing one loop.

Every client really connects over TCP to the loopback MTProto server of
``workers.testing`` on 127.0.0.1.
Figures are medians over several runs; the machine has 2 shared cores, so read the
ratios, not the absolute times. Time is read through trio's clock. The process runs
in a temporary directory (Pyrogram writes ``unknown_errors.txt`` to the cwd).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import logging
import os
import random
import statistics
import sys
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio
from pyrogram.client import Client
from pyrogram.handlers.disconnect_handler import DisconnectHandler

import specs
import supervisor
import workers
from supervisor import events
from workers._aio_bridge import aio_call, open_bridged_loop
from workers._pyrogram import PyrogramClientWorker, PyrogramConfig, account_pool
from workers.testing import Account, MTProtoServer, open_mtproto_server

API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"
#: A backoff so long that no worker is restarted while a run lasts.
HOLD = specs.Backoff(wait_initial=600, wait_max=600, wait_jitter=0)


class _Events:
    """A supervisor hook that keeps events, for the benchmark to wait on."""

    def __init__(self) -> None:
        self.events: list[supervisor.Event] = []
        self._changed = trio.lowlevel.ParkingLot()

    def __call__(self, event: supervisor.Event) -> None:
        self.events.append(event)
        self._changed.unpark_all()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, kind: type[Any], count: int) -> list[Any]:
        while len(self.of(kind)) < count:
            await self._changed.park()
        return self.of(kind)


def _config(account: Account, name: str, **overrides: Any) -> PyrogramConfig:
    return PyrogramConfig(
        name=name,
        api_id=API_ID,
        api_hash=API_HASH,
        session_string=account.session_string,
        **overrides,
    )


def _log_only(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio's semantics for errors no one awaited: log them (trio-asyncio raises them).

    Pyrogram's reconnect task fails on the storage ``disconnect()`` closed under it.
    """
    loop.set_exception_handler(lambda loop, context: None)


def _client(account: Account, name: str) -> Client:
    """A bare client as the worker builds one (in memory, FloodWaits raised)."""
    return Client(
        name,
        api_id=API_ID,
        api_hash=API_HASH,
        session_string=account.session_string,
        in_memory=True,
        sleep_threshold=0,
        workers=1,
        workdir=os.curdir,
    )


async def _open(client: Client) -> None:
    """What the worker's ``init`` does, by hand."""
    await aio_call(client.connect)
    client.me = await aio_call(client.get_me)
    await aio_call(client.initialize)


async def _close(client: Client) -> None:
    with trio.move_on_after(2.0):
        if client.is_initialized:
            await aio_call(client.terminate)
        if client.is_connected:
            await aio_call(client.disconnect)


@asynccontextmanager
async def _bare(
    account: Account, name: str, on_disconnect: Callable[[str], None] | None = None
) -> AsyncIterator[Client]:
    """A connected bare client on its own bridged loop, for the block."""
    async with open_bridged_loop() as loop:
        _log_only(loop)
        client = _client(account, name)
        if on_disconnect is not None:

            async def handler(client: Client) -> None:
                on_disconnect(name)

            client.add_handler(DisconnectHandler(handler))
        await _open(client)
        try:
            yield client
        finally:
            await _close(client)


# ------------------------------------------------------------ dead-link detection


async def _detection_run(per_kind: int, settle: float) -> dict[str, list[float]]:
    """Black-hole every account ``settle`` s after the start; seconds until each kind notices."""
    found: dict[str, list[float]] = {"worker 5/1.5": [], "worker 1/1.5": [], "pyrogram": []}
    async with open_mtproto_server() as server:
        recorder = _Events()
        registry = workers.Registry()
        fleet: dict[str, tuple[str, Account]] = {}
        children = []
        for kind, interval in (("worker 5/1.5", 5.0), ("worker 1/1.5", 1.0)):
            for n in range(per_kind):
                account = server.new_account()
                name = f"{kind.split()[1].replace('/', '-')}-{n}"
                worker = PyrogramClientWorker(
                    _config(account, name, ping_interval=interval, ping_timeout=1.5),
                    registry=registry,
                )
                children.append(worker.child_spec(name, restart=specs.TRANSIENT))
                fleet[name] = (kind, account)
        tree = specs.SupervisorSpec(children=children, backoff=HOLD, intensity=100)
        bare_accounts = [server.new_account() for _ in range(per_kind)]
        noticed: dict[str, float] = {}
        silenced_at = 0.0

        def lost(name: str) -> None:
            # Pyrogram calls it on each session stop: the first after the silence counts
            if silenced_at and name not in noticed:
                noticed[name] = trio.current_time() - silenced_at

        async with AsyncExitStack() as stack:
            for n, account in enumerate(bare_accounts):
                await stack.enter_async_context(_bare(account, f"bare-{n}", lost))
            await stack.enter_async_context(supervisor.open_supervisor(tree, hooks=[recorder]))
            await trio.sleep(settle)  # the silence falls somewhere in the ping intervals
            for _kind, account in fleet.values():
                server.blackhole(account)
            for account in bare_accounts:
                server.blackhole(account)
            silenced_at = trio.current_time()
            with trio.fail_after(30):
                exits = await recorder.wait(events.ChildExited, len(fleet))
                while len(noticed) < per_kind:  # noqa: ASYNC110 - set from asyncio callbacks
                    await trio.sleep(0.01)
            for exited in exits:
                assert isinstance(exited.reason.exception, workers.HeartbeatTimeout)
                found[fleet[exited.child][0]].append(exited.time - silenced_at)
            found["pyrogram"].extend(noticed.values())
            server.blackhole(on=False)
            for account in [*(a for _k, a in fleet.values()), *bare_accounts]:
                server.blackhole(account, on=False)
    return found


# ------------------------------------------------------------ restart time


async def _worker_restarts(count: int) -> list[float]:
    """Seconds from ``worker.fail()`` to the next incarnation's readiness."""
    async with open_mtproto_server() as server:
        account = server.new_account()
        recorder = _Events()
        worker = PyrogramClientWorker(_config(account, "restart"), registry=workers.Registry())
        tree = specs.SupervisorSpec(children=[worker.child_spec("restart")], intensity=count + 1)
        samples = []
        async with supervisor.open_supervisor(tree, hooks=[recorder]):
            for n in range(count):
                started = trio.current_time()
                worker.fail(workers.ConnectionLost(reason="benchmark"))
                restarted = (await recorder.wait(events.ChildRestarted, n + 1))[n]
                samples.append(restarted.time - started)
                await trio.sleep(0.02)
    return samples


async def _bare_restarts(count: int) -> list[float]:
    """The same steps by hand: stop, leave the loop, new loop, new client, open."""
    async with open_mtproto_server() as server:
        account = server.new_account()
        samples = []
        stopped = trio.current_time()
        for n in range(count + 1):
            async with open_bridged_loop() as loop:
                _log_only(loop)
                client = _client(account, "bare")
                await _open(client)
                if n:
                    samples.append(trio.current_time() - stopped)
                await trio.sleep(0.02)
                stopped = trio.current_time()
                await _close(client)
    return samples


async def _reconnects(count: int) -> list[float]:
    """A bare client reconnecting on its own loop: no new loop, no new client."""
    async with open_mtproto_server() as server, open_bridged_loop() as loop:
        _log_only(loop)
        account = server.new_account()
        client = _client(account, "reconnect")
        await _open(client)
        samples = []
        for _ in range(count):
            await trio.sleep(0.02)
            started = trio.current_time()
            await _close(client)
            await _open(client)
            samples.append(trio.current_time() - started)
        await _close(client)
    return samples


# ------------------------------------------------------------ memory


async def _traced_per_account(start: Callable[[MTProtoServer, int], Any], accounts: int) -> float:
    """Bytes traced per idle account: ``start(server, n)`` is an async context manager."""
    async with open_mtproto_server() as server:
        async with start(server, 1):  # warm-up: lazily built Pyrogram tables, trio-asyncio
            await trio.sleep(0.1)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        async with start(server, accounts):
            await trio.sleep(0.5)  # idle
            gc.collect()
            during = tracemalloc.get_traced_memory()[0]
    return (during - before) / accounts


@asynccontextmanager
async def _pool_accounts(server: MTProtoServer, count: int) -> AsyncIterator[None]:
    spec = account_pool(registry=workers.Registry(), hooks=[])
    async with supervisor.open_supervisor(spec, hooks=[]) as pool:
        for n in range(count):
            await pool.start_child(_config(server.new_account(), f"pool-{n}"))
        yield


@asynccontextmanager
async def _bare_accounts(server: MTProtoServer, count: int) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for n in range(count):
            await stack.enter_async_context(_bare(server.new_account(), f"bare-{n}"))
        yield


@asynccontextmanager
async def _shared_loop_accounts(server: MTProtoServer, count: int) -> AsyncIterator[None]:
    async with open_bridged_loop() as loop:
        _log_only(loop)
        clients = [_client(server.new_account(), f"shared-{n}") for n in range(count)]
        for client in clients:
            await _open(client)
        try:
            yield
        finally:
            for client in clients:
                await _close(client)


# ------------------------------------------------------------ the table


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _cache_pseudo_files() -> Callable[[], None]:
    """Register the ``<frozen ...>`` files of this stack in ``inspect``'s module cache.

    Returns:
        A function that removes them again.
    """
    added = []
    frame = sys._getframe()
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<") and name not in inspect.modulesbyfile:
            inspect.modulesbyfile[name] = frame.f_globals.get("__name__", "__main__")
            added.append(name)
        frame = frame.f_back  # type: ignore[assignment]

    def undo() -> None:
        for name in added:
            inspect.modulesbyfile.pop(name, None)

    return undo


def _restart_table(runs: int, restarts: int) -> None:
    worker = [_median(trio.run(_worker_restarts, restarts)) for _ in range(runs)]
    bare = [_median(trio.run(_bare_restarts, restarts)) for _ in range(runs)]
    same_loop = [_median(trio.run(_reconnects, restarts)) for _ in range(runs)]
    print(f"{'worker (supervisor, new loop, new client)':48} {_median(worker) * 1e3:8.1f} {'':>7}")
    for label, values in (
        ("bare, by hand (new loop, new client)", bare),
        ("bare, reconnect on its own loop", same_loop),
    ):
        ratio = _median(worker) / _median(values)
        print(f"{label:48} {_median(values) * 1e3:8.1f} {ratio:7.2f}")


def main(argv: list[str] | None = None) -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, fewer accounts")
    parser.add_argument("--runs", type=int, default=None, help="runs of each measurement")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    restarts = 10 if args.quick else 30
    accounts = 10 if args.quick else 20
    logging.getLogger("pyrogram").setLevel(logging.CRITICAL)  # its reconnect warnings
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        _measure(runs, restarts, accounts)


def _measure(runs: int, restarts: int, accounts: int) -> None:
    detected: dict[str, list[float]] = {}
    phases = random.Random(7)
    for _ in range(runs):
        for kind, seconds in trio.run(_detection_run, 3, phases.uniform(0.5, 5.5)).items():
            detected.setdefault(kind, []).extend(seconds)
    pyrogram_own = _median(detected["pyrogram"])
    print(f"dead-link detection, seconds after the black hole ({runs} runs x 3 accounts)")
    print(f"{'':34} {'median':>8} {'min':>7} {'max':>7} {'vs pyrogram':>12}")
    for kind, label in (
        ("worker 5/1.5", "worker, ping 5 s / timeout 1.5 s"),
        ("worker 1/1.5", "worker, ping 1 s / timeout 1.5 s"),
        ("pyrogram", "Pyrogram's own (read timeout)"),
    ):
        values = detected[kind]
        print(
            f"{label:34} {_median(values):8.2f} {min(values):7.2f} {max(values):7.2f} "
            f"{_median(values) / pyrogram_own:12.2f}"
        )

    print()
    print(f"restart of one account, ms, exit -> connected again ({runs} runs x {restarts})")
    print(f"{'<frozen> frames cached in inspect':48} {'median':>8} {'ratio':>7}")
    undo = _cache_pseudo_files()
    try:
        _restart_table(runs, restarts)
    finally:
        undo()
    print(f"{'as run (python -m: Pyrogram storage rescans)':48} {'median':>8} {'ratio':>7}")
    _restart_table(runs, restarts)

    tracemalloc.start()
    memory: dict[str, list[float]] = {"pool": [], "bare": [], "shared": []}
    for _ in range(runs):
        for kind, start in (
            ("pool", _pool_accounts),
            ("bare", _bare_accounts),
            ("shared", _shared_loop_accounts),
        ):
            memory[kind].append(trio.run(_traced_per_account, start, accounts))
    tracemalloc.stop()
    print()
    print(f"memory per idle account, KiB traced ({runs} runs x {accounts} accounts)")
    print(f"{'':48} {'median':>8} {'ratio':>7}")
    ours = _median(memory["pool"])
    print(f"{'account_pool account (worker, supervisor, loop)':48} {ours / 1024:8.1f} {'':>7}")
    for kind, label in (
        ("bare", "bare client on its own bridged loop"),
        ("shared", "bare client, one loop shared by all"),
    ):
        theirs = _median(memory[kind])
        print(f"{label:48} {theirs / 1024:8.1f} {ours / theirs:7.2f}")


if __name__ == "__main__":
    main()
