"""A cluster of 3 member processes and 300 Pyrogram accounts on etcd, under faults.

``python -m benchmarks.bench_cluster [--quick] [--accounts N] [--ttl S] [--max-starting N]``
starts a real etcd on loopback, the loopback MTProto server (in this process) with one
account per key, and member processes (``--member``, this module) each running a keyed
pool whose children are real :class:`~workers._pyrogram.PyrogramClientWorker` clients of
that server. Then:

- kill -9 of one member: seconds until every account is connected again;
- SIGTERM of one member: the longest gap of any account (its old connection closed →
  its new one identified; compare with ``bench_pyrogram``'s restart time of one account),
  and where the gaps went (``sigterm_phases_ms``: closed → owner key released → taken by
  the new owner → connected, from each member's ``<member>.events`` lines);
- a 4th member joins: the fraction of accounts that moved (a new connection);
- etcd killed and restarted (same data): every account stops (no proof of
  ownership), seconds from etcd's return until all are back;
- one member behind a TCP relay that black-holes it: its accounts close before any of
  them opens elsewhere; seconds from the cut until all run on the others.

Through all of it the server counts concurrent connections per auth key
(``max_concurrent_sessions``); the figure printed must be 1. Time is trio's clock of
this process; the machine has 2 shared cores, so read orders of magnitude. The full
run (300 accounts: 100 Pyrogram clients, each on its own trio-asyncio loop, per member)
takes under a minute, ``--quick`` (30 accounts) about half of one; figures in docs/scaling.md.
Each member writes one JSON line a second to ``<work dir>/<member>.jsonl`` (its loop's
lag, its lease renewals: worst round trip, deadline misses, leases lost), summed up at
the end as ``members_seen``: a member with misses while etcd was up churned.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TextIO

import trio

import specs
import workers
from supervisor import events
from supervisor.cluster import ClusterConfig, EtcdClient, KeyedPool, open_keyed_pool
from tests.cluster_harness import ROOT, Etcd
from workers._pyrogram import PyrogramClientWorker, PyrogramConfig
from workers.testing import (
    Account,
    MTProtoServer,
    open_mtproto_server,
    open_tcp_relay,
    redirect_pyrogram,
)

API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"
TTL = 5
PREFIX = "/bench/"


# -- a member process ------------------------------------------------------------


async def member_main(
    member: str, etcd: str, port: int, accounts_file: str, ttl: int, max_starting: int
) -> None:
    """One member: a keyed pool of Pyrogram clients; SIGTERM leaves cleanly."""
    sessions: dict[str, str] = json.loads(await trio.Path(accounts_file).read_text())
    registry = workers.Registry()
    config = ClusterConfig(endpoints=[etcd], member=member, ttl=ttl, prefix=PREFIX)
    trace = Path(accounts_file).with_name(f"{member}.events").open("a")

    def child(key: str) -> specs.ChildSpec:
        worker = PyrogramClientWorker(
            PyrogramConfig(
                name=key, api_id=API_ID, api_hash=API_HASH, session_string=sessions[key]
            ),
            registry=registry,
        )
        return worker.child_spec("client", shutdown=config.effective_margin / 2)

    with (
        trace,
        redirect_pyrogram(port),
        trio.open_signal_receiver(signal.SIGTERM) as signals,
    ):
        async with (
            open_keyed_pool(
                sorted(sessions),
                child,
                cluster=config,
                hooks=[partial(record, trace)],
                max_starting=max_starting,
            ) as pool,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(monitor, pool, Path(accounts_file).with_name(f"{member}.jsonl"))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def record(out: TextIO, event: events.Event) -> None:
    """A hook: one line per key taken, key released and key's client connected.

    Stamped with ``time.perf_counter()``, the system's monotonic clock, which the
    processes share (trio's clock adds an offset of its own to it in each run).
    """
    if isinstance(event, events.KeyAcquired | events.KeyReleased):
        out.write(f"{time.perf_counter()} {type(event).__name__} {event.child}\n")
    elif isinstance(event, events.ChildStarted) and event.child == "client":
        out.write(f"{time.perf_counter()} ChildStarted {event.supervisor}\n")


async def monitor(pool: KeyedPool, path: Path) -> None:
    """Every second, one JSON line: the loop's lag, the lease renewals, the keys by state.

    The lag is how late a 0.1 s sleep wakes up: how long any task of this
    member (its lease renewal too) waits for the CPU.
    """
    async with await trio.Path(path).open("a") as out:
        while True:
            lag = 0.0
            for _ in range(10):
                asked = trio.current_time()
                await trio.sleep(0.1)
                lag = max(lag, trio.current_time() - asked - 0.1)
            summary = pool.summary()
            line = {"lag_ms": round(lag * 1000, 1), "states": summary["states"]}
            await out.write(json.dumps({**line, **summary["renewals"]}) + "\n")
            await out.flush()


# -- the driver ------------------------------------------------------------------


class Watch:
    """Per account: is it connected, since when was it down, how many connections."""

    def __init__(self, server: MTProtoServer, keys: dict[str, Account]) -> None:
        self.server = server
        self.accounts = keys
        self.up: dict[str, bool] = dict.fromkeys(keys, False)
        self.down_since: dict[str, float] = {}
        self.gaps: list[float] = []
        self.gap_keys: list[str] = []
        self.connects: dict[str, int] = dict.fromkeys(keys, 0)
        self.ups: list[tuple[str, float]] = []
        self.downs: list[tuple[str, float]] = []

    def observe(self) -> bool:
        now = trio.current_time()
        # one pass over the connections: this runs on every change the server sees, in
        # the server's own process, so per-account counting (N² at 300) would slow it
        live = self.server.live_sessions()
        for key, account in self.accounts.items():
            up = live[account.user_id] > 0
            if up and not self.up[key]:
                self.connects[key] += 1
                self.ups.append((key, now))
                if key in self.down_since:
                    self.gaps.append(now - self.down_since.pop(key))
                    self.gap_keys.append(key)
            elif not up and self.up[key]:
                self.down_since[key] = now
                self.downs.append((key, now))
            self.up[key] = up
        return False

    # each predicate observes first: the server wakes every waiter on a change, in no
    # given order, so the observer's own wake-up may come after this one's
    def all_up(self) -> bool:
        self.observe()
        return all(self.up.values())

    def none_up(self) -> bool:
        self.observe()
        return not any(self.up.values())


def phase(name: str) -> None:
    """Say on stderr which phase runs (a long run shows its progress)."""
    print(f"[{trio.current_time():9.2f}] {name}", file=sys.stderr, flush=True)


async def until(server: MTProtoServer, predicate: Callable[[], bool], guard: float = 300) -> float:
    """Wait for ``predicate`` (checked on every server change); the time it held."""
    with trio.fail_after(guard):  # a hang guard
        await server.wait_until(predicate)
    return trio.current_time()


async def owned_by_others(url: str, gone: str, count: int) -> float:
    """Poll etcd until all ``count`` owner keys exist and none is ``gone``'s: when that held."""
    async with EtcdClient([url]) as client:
        with trio.fail_after(300):  # a hang guard
            while True:
                _, kvs = await client.range_prefix(f"{PREFIX}owners/")
                if len(kvs) == count and all(kv.value != gone.encode() for kv in kvs):
                    return trio.current_time()
                await trio.sleep(0.05)


async def drive(count: int, ttl: int, max_starting: int) -> dict[str, object]:
    figures: dict[str, object] = {
        "accounts": count,
        "members": 3,
        "ttl": ttl,
        "max_starting": max_starting,
    }
    etcd = Etcd()
    await trio.to_thread.run_sync(etcd.start)
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    phase(f"members log to {work}")
    try:
        async with open_mtproto_server() as server, open_tcp_relay(etcd.url) as relay:
            accounts = {f"acct-{n}": server.new_account() for n in range(count)}
            (work / "accounts.json").write_text(
                json.dumps({k: a.session_string for k, a in accounts.items()})
            )
            watch = Watch(server, accounts)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.wait_until, watch.observe)

                async def start(name: str, url: str) -> trio.Process:
                    command = [sys.executable, "-m", "benchmarks.bench_cluster", "--member"]
                    command += [name, url, str(server.port), str(work / "accounts.json")]
                    command += [str(ttl), str(max_starting)]
                    log = (work / f"{name}.log").open("ab")
                    run = partial(
                        trio.run_process, command, cwd=work, check=False, stderr=log,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )  # fmt: skip
                    process: trio.Process = await nursery.start(run)
                    return process

                began = trio.current_time()
                phase("start")
                members = {m: await start(m, etcd.url) for m in ("a", "b")}
                members["c"] = await start("c", relay.url)
                figures["start_all_s"] = round(await until(server, watch.all_up) - began, 2)

                # kill -9 of a
                phase("kill -9 a")
                watch.gaps.clear()
                watch.ups.clear()
                watch.downs.clear()
                killed = trio.current_time()
                members["a"].kill()
                owned = await owned_by_others(etcd.url, "a", count)
                figures["kill9_keys_owned_s"] = round(owned - killed, 2)
                # its accounts went down (at once: the kernel closes their sockets) and all
                # are back; they may be back before etcd's poll above sees every key owned
                await until(server, lambda: watch.all_up() and bool(watch.downs))
                figures["kill9_takeover_s"] = round(max(t for _, t in watch.ups) - killed, 2)

                # a comes back, then b leaves with SIGTERM
                phase("a2 joins, SIGTERM b")
                members["a"] = await start("a2", etcd.url)
                await until(server, lambda: watch.all_up() and max(watch.connects.values()) >= 1)
                await trio.sleep(ttl)  # let placement settle: a2's keys moved in
                await until(server, watch.all_up)
                watch.gaps.clear()
                watch.gap_keys.clear()
                watch.ups.clear()
                watch.downs.clear()
                sigterm = trio.current_time()
                members["b"].send_signal(signal.SIGTERM)
                await members["b"].wait()
                await until(server, watch.all_up)
                # the server's view of the handoff, on the members' clock (perf_counter)
                offset = time.perf_counter() - trio.current_time()
                closed = {k: t + offset for k, t in watch.downs}
                opened = {k: t + offset for k, t in watch.ups}
                figures["sigterm_handoff_s"] = round(max(opened.values()) - offset - sigterm, 2)
                figures["sigterm_max_gap_s"] = round(max(watch.gaps, default=0.0), 3)
                figures["sigterm_median_gap_s"] = round(statistics.median(watch.gaps or [0.0]), 3)
                figures["sigterm_accounts_moved"] = len(set(watch.gap_keys))
                figures["sigterm_accounts_down_twice"] = len(watch.gap_keys) - len(
                    set(watch.gap_keys)
                )
                members["b"] = await start("b2", etcd.url)
                await trio.sleep(ttl)
                await until(server, watch.all_up)

                # a 4th member joins
                phase("4th member joins")
                before = dict(watch.connects)
                members["d"] = await start("d", etcd.url)
                await trio.sleep(2 * ttl)  # moves are causal, but when they end is not
                await until(server, watch.all_up)
                moved = sum(1 for k in accounts if watch.connects[k] > before[k])
                figures["join_moved_fraction"] = round(moved / count, 3)

                # etcd restarted on the same data
                phase("etcd restart")
                etcd.kill()
                figures["etcd_down_all_stopped"] = bool(await until(server, watch.none_up))
                phase("etcd down: every account stopped; etcd starts again")
                await trio.to_thread.run_sync(etcd.start)
                phase("etcd is back")
                back = trio.current_time()  # etcd answers /health again
                figures["etcd_back_all_up_s"] = round(await until(server, watch.all_up) - back, 2)

                # c cut off from etcd by the black-holing relay
                phase("partition")
                cut = trio.current_time()
                watch.ups.clear()
                watch.downs.clear()
                relay.freeze()
                await until(server, lambda: not watch.all_up())
                figures["partition_takeover_s"] = round(await until(server, watch.all_up) - cut, 2)
                # c's accounts: every one closed before any opened on another member
                figures["partition_last_stop_s"] = round(max(t for _, t in watch.downs) - cut, 2)
                figures["partition_first_restart_s"] = round(min(t for _, t in watch.ups) - cut, 2)
                figures["partition_accounts_moved"] = len({k for k, _ in watch.downs})
                figures["max_concurrent_sessions_per_account"] = server.max_concurrent_sessions()
                nursery.cancel_scope.cancel()
        figures["members_seen"] = member_figures(work)
        figures["sigterm_phases_ms"] = handoff_phases(work, "b", closed, opened)
    finally:
        etcd.close()
    return figures


def member_figures(work: Path) -> dict[str, dict[str, float]]:
    """Per member, from its monitor lines: worst loop lag, worst renewal, deadline misses."""
    seen: dict[str, dict[str, float]] = {}
    for path in sorted(work.glob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
        if lines:
            seen[path.stem] = {
                "max_lag_ms": max(line["lag_ms"] for line in lines),
                "max_rtt_ms": max(line["max_rtt_ms"] for line in lines),
                "renewals": lines[-1]["sent"],
                "failed": lines[-1]["failed"],
                "misses": lines[-1]["misses"],
                "lost": lines[-1]["lost"],
            }
    return seen


def handoff_phases(
    work: Path, old: str, closed: dict[str, float], opened: dict[str, float]
) -> dict[str, list[float]]:
    """Where each SIGTERM'd key's gap went: median and max ms of each step, close to open.

    ``closed`` → ``released`` (the old owner's child ends, its owner key is deleted) →
    ``acquired`` (a new owner created the owner key) → ``opened`` (its client is
    connected and identified at the server).
    """
    released: dict[str, float] = {}
    acquired: dict[str, float] = {}
    for path in work.glob("*.events"):
        for line in path.read_text().splitlines():
            stamp, kind, key = line.split()
            if not closed.get(key, math.inf) <= float(stamp) <= opened.get(key, -math.inf):
                continue  # not this key's handoff
            if kind == "KeyReleased" and path.stem == old:
                released.setdefault(key, float(stamp))
            elif kind == "KeyAcquired" and path.stem != old:
                acquired.setdefault(key, float(stamp))
    keys = [k for k in closed if k in released and k in acquired and k in opened]
    steps = {
        "closed_released": [released[k] - closed[k] for k in keys],
        "released_acquired": [acquired[k] - released[k] for k in keys],
        "acquired_opened": [opened[k] - acquired[k] for k in keys],
    }
    return {
        name: [round(statistics.median(v) * 1000, 1), round(max(v) * 1000, 1)]
        for name, v in steps.items()
        if v
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 accounts")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--ttl", type=int, default=TTL, help="the members' lease TTL (s)")
    parser.add_argument(
        "--max-starting", type=int, default=8, help="the members' max_starting (default 8)"
    )
    parser.add_argument("--member", nargs=6, metavar=("ID", "ETCD", "PORT", "ACCOUNTS", "TTL", "N"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.member:
        name, url, port, path, ttl, max_starting = args.member
        trio.run(member_main, name, url, int(port), path, int(ttl), int(max_starting))
        return
    figures = trio.run(drive, 30 if args.quick else args.accounts, args.ttl, args.max_starting)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
