"""Mass failure through the real workers, against a hand-written reconnect loop per session.

``python -m benchmarks.bench_mass_workers [--quick] [--runs N]`` prints, each beside a
hand-written ``while True: try/except: sleep(jittered backoff)`` loop per session run
in the same process against the same loopback server:

- ``sessions`` (1,000; 200 with ``--quick``) WebSocket sessions
  (:class:`~workers._websocket.WebSocketSessionWorker` under one supervisor with
  ``Backoff(wait_initial=0.1, wait_jitter=1.0)``) when the loopback WebSocket server
  restarts: seconds until all are back, and the connection attempts the server sees
  (its accepts after the restart: peak per second, p10/p50/p90);
- ``accounts`` (200) Pyrogram accounts (:class:`~workers._pyrogram.PyrogramClientWorker`
  in an :func:`~workers._pyrogram.account_pool`, real Pyrogram through the
  trio-asyncio bridge, default heartbeat ``ping_interval=5, ping_timeout=1.5``,
  ``ACCOUNT_BACKOFF``) when the loopback MTProto server drops every link at once,
  and (full run, or ``--only outage``) when it also refuses connections for
  ``outage`` seconds (a restarting data centre): seconds until every account is back
  (its newest connection identified by the server, after a quiet spell with no new
  connection), the connection attempts
  the server accepts (peak per second in 50 ms buckets, p10/p50/p90 of the times
  accounts came back), and what brought them back: supervisor restarts (the worker's
  failure detection) or Pyrogram's own reconnect (the connections beyond the
  restarts). The hand loop runs each bare Pyrogram client on its own bridged loop,
  heartbeats with the same ping interval and timeout, and sleeps the same
  ``ACCOUNT_BACKOFF`` after a failure.

Pyrogram reconnects by itself when a link drops: its session restarts at once, with
no delay and no jitter, and while the data centre refuses, it tries again every second
(rounds of three connects 1 s apart, for ever). The worker leaves a session Pyrogram
reported down alone until Pyrogram has it started again, and restarts the account (new
loop, new client) only when it is not back within ``reconnect_timeout`` (5 s).

Time is trio's clock; the machine has 2 shared cores (and other work on them), so read
the ratios and orders of magnitude. The full run takes about 3 minutes, ``--quick``
(one pair, no outage table) about 20 s. The process runs in a temporary directory
(Pyrogram writes ``unknown_errors.txt`` to the cwd), with ``inspect``'s cache primed as in
``bench_pyrogram`` (else each Pyrogram storage access rescans ``sys.modules``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import attrs
import pyrogram.raw
import trio

import specs
import supervisor
import workers
from benchmarks.bench_mass import JITTERED, _peak_rate, _quantiles
from benchmarks.bench_pyrogram import (
    API_HASH,
    API_ID,
    _cache_pseudo_files,
    _client,
    _close,
    _log_only,
    _open,
)
from specs.policy import backoff_delay
from supervisor import events
from workers._aio_bridge import aio_call, open_bridged_loop
from workers._pyrogram import ACCOUNT_BACKOFF, PyrogramConfig, account_pool
from workers.testing import Account, MTProtoServer, open_mtproto_server

raw: Any = pyrogram.raw  # generated code without re-exports: untyped

#: No connection for this long after every account is back: the herd is over.
QUIET = 3.0
#: The worker's heartbeat defaults (``PyrogramConfig``), used by the hand loop too.
PING_INTERVAL, PING_TIMEOUT = 5.0, 1.5


@attrs.define
class Herd:
    """One mass failure as the server saw it; times in seconds after the failure.

    Attributes:
        back: when each session's (final) connection came back.
        attempts: when the server accepted each connection after the failure.
        restarts: restarts of the sessions by the supervisor or the hand loop.
    """

    back: list[float]
    attempts: list[float]
    restarts: int = 0

    @property
    def all_back(self) -> float:
        return max(self.back)


# ----------------------------------------------------------------- WebSocket


async def _ws_herd(sessions: int, *, supervised: bool, rng: random.Random) -> Herd:
    """``sessions`` WebSocket sessions; the server restarts."""
    from workers._websocket import WebSocketConfig, WebSocketMessage, WebSocketSessionWorker
    from workers.testing import open_websocket_test_server

    restarts = 0

    def count(event: supervisor.Event) -> None:
        nonlocal restarts
        restarts += isinstance(event, events.ChildRestarted)

    async with open_websocket_test_server() as server, trio.open_nursery() as nursery:
        if supervised:
            registry = workers.Registry()
            send, _ = trio.open_memory_channel[WebSocketMessage](float("inf"))
            children = [
                WebSocketSessionWorker(
                    WebSocketConfig(url=server.url, ping_interval=None),
                    deliver_to=send,
                    registry=registry,
                ).child_spec(f"ws{i}")
                for i in range(sessions)
            ]
            spec = specs.SupervisorSpec(
                children=children, backoff=JITTERED, intensity=10 * sessions, period=5
            )
            handle = await nursery.start(
                partial(supervisor.run_supervisor, spec, hooks=[count], rng=rng)
            )
        else:
            import trio_websocket

            async def client() -> None:
                nonlocal restarts
                failures = 0
                while True:
                    try:
                        async with trio_websocket.open_websocket_url(
                            server.url, connect_timeout=5, disconnect_timeout=0.05
                        ) as ws:
                            failures = 0
                            while True:
                                await ws.get_message()
                    except (
                        OSError,
                        trio_websocket.HandshakeError,
                        trio_websocket.ConnectionClosed,
                    ):
                        failures += 1
                        restarts += 1
                        await trio.sleep(backoff_delay(JITTERED, failures, rng))

            for _ in range(sessions):
                nursery.start_soon(client)
        await server.wait_connected(sessions)
        before = server.accepted
        restarts = 0
        start = trio.current_time()
        await server.restart()
        await server.wait_accepted(before + sessions)
        back = [t - start for t in server.accepted_at[before:]]
        if supervised:
            await handle.shutdown()
        nursery.cancel_scope.cancel()
    return Herd(back=back, attempts=back, restarts=restarts)


# ----------------------------------------------------------------- Pyrogram


def _back(server: MTProtoServer, accounts: list[Account], since: float) -> bool:
    return all(
        server.live_connections(a) == 1 and server.connected_at.get(a.user_id, 0.0) >= since
        for a in accounts
    )


async def _settled(server: MTProtoServer, accounts: list[Account], since: float) -> Herd:
    """Wait until every account is back and no connection came for ``QUIET`` s."""
    before = len(server.accepted_at) - sum(t >= since for t in server.accepted_at)
    with trio.fail_after(120):  # a hang guard
        while True:
            await server.wait_until(lambda: _back(server, accounts, since))
            seen = len(server.accepted_at)
            await trio.sleep(QUIET)
            if len(server.accepted_at) == seen and _back(server, accounts, since):
                break
    return Herd(
        back=[server.connected_at[a.user_id] - since for a in accounts],
        attempts=[t - since for t in server.accepted_at[before:]],
    )


async def _fail(server: MTProtoServer, outage: float) -> None:
    """Drop every link; with an outage, also refuse connections for ``outage`` s."""
    if not outage:
        server.drop()
        return
    await server.stop_listening()
    await trio.sleep(outage)
    await server.start_listening()


async def _hand_account(
    account: Account, name: str, rng: random.Random, failed: list[int], ping_timeout: float
) -> None:
    """A bare client in the loop users write: connect, heartbeat, on error sleep and retry."""
    failures = 0
    while True:
        try:
            async with open_bridged_loop() as loop:
                _log_only(loop)
                client = _client(account, name)
                try:
                    with trio.fail_after(10):
                        await _open(client)
                    failures = 0
                    for ping_id in range(1, 1 << 62):
                        await trio.sleep(PING_INTERVAL)
                        with trio.fail_after(ping_timeout + 0.25):
                            ping = raw.functions.Ping(ping_id=ping_id)
                            await aio_call(client.invoke, ping, retries=0, timeout=ping_timeout)
                finally:
                    await _close(client)
        except Exception:  # the hand-written loop users write
            failures += 1
            failed[0] += 1
            await trio.sleep(backoff_delay(ACCOUNT_BACKOFF, failures, rng))


async def _pyrogram_herd(
    count: int, *, supervised: bool, outage: float, seed: int, ping_timeout: float = PING_TIMEOUT
) -> Herd:
    """``count`` accounts; the server drops every link (and refuses for ``outage`` s)."""
    rng = random.Random(seed)
    restarts = [0]

    def counted(event: supervisor.Event) -> None:
        if isinstance(event, events.ChildRestarted) and event.child == "client":
            restarts[0] += 1

    async with open_mtproto_server() as server, AsyncExitStack() as stack:
        accounts = [server.new_account() for _ in range(count)]
        if supervised:
            spec = account_pool(registry=workers.Registry(), hooks=[counted])
            pool = await stack.enter_async_context(
                supervisor.open_supervisor(spec, hooks=[], rng=rng)
            )
            for n, account in enumerate(accounts):
                config = PyrogramConfig(
                    name=f"acct-{n}",
                    api_id=API_ID,
                    api_hash=API_HASH,
                    session_string=account.session_string,
                    ping_timeout=ping_timeout,
                )
                await pool.start_child(config)
        else:
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            for n, account in enumerate(accounts):
                nursery.start_soon(_hand_account, account, f"acct-{n}", rng, restarts, ping_timeout)
        with trio.fail_after(120):
            await server.wait_until(lambda: _back(server, accounts, 0.0))
        await trio.sleep(0.5)  # every client idle
        restarts[0] = 0
        failed_at = trio.current_time()
        await _fail(server, outage)
        herd = await _settled(server, accounts, failed_at)
        herd.restarts = restarts[0]
        if supervised:
            await pool.shutdown()
    return herd


# ----------------------------------------------------------------- the table


def _row(label: str, herds: list[Herd], baseline: float | None) -> str:
    back = statistics.median(h.all_back for h in herds)
    peak = statistics.median(_peak_rate(h.attempts) for h in herds)
    # each run's quantiles, then their medians: p90 <= all back, as in each run
    quantiles = [_quantiles(sorted(h.back), (0.1, 0.5, 0.9)) for h in herds]
    p10, p50, p90 = (statistics.median(q[i] for q in quantiles) for i in range(3))
    attempts = statistics.median(len(h.attempts) for h in herds)
    # the median hides the run where the herd made some accounts restart: show the most too
    restarts = f"{statistics.median(h.restarts for h in herds):g}/{max(h.restarts for h in herds)}"
    ratio = f"{back / baseline:6.2f}" if baseline else f"{'':>6}"
    return (
        f"{label:12} {back:9.3f} {ratio} {p10:7.3f} {p50:7.3f} {p90:7.3f} "
        f"{peak:8.0f} {attempts:9.0f} {restarts:>16}"
    )


def _table(title: str, pairs: list[tuple[Herd, Herd]]) -> None:
    print(title)
    print(
        f"{'':12} {'all back':>9} {'ratio':>6} {'p10':>7} {'p50':>7} {'p90':>7} "
        f"{'peak/s':>8} {'attempts':>9} {'restarts med/max':>16}"
    )
    hand = statistics.median(p[1].all_back for p in pairs)
    print(_row("supervised", [p[0] for p in pairs], hand))
    print(_row("hand loop", [p[1] for p in pairs], None))


def _pairs(runs: int, one: Callable[[bool, int], Herd]) -> list[tuple[Herd, Herd]]:
    # back to back, the order alternating, so that drift in the machine's load is shared
    pairs = []
    for i in range(runs):
        if i % 2:
            hand = one(False, i)
            ours = one(True, i)
        else:
            ours = one(True, i)
            hand = one(False, i)
        pairs.append((ours, hand))
    return pairs


def main(argv: list[str] | None = None) -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, fewer sessions")
    parser.add_argument("--runs", type=int, default=None, help="pairs of runs per row")
    parser.add_argument("--accounts", type=int, default=200, help="Pyrogram accounts")
    parser.add_argument(
        "--outage", type=float, default=2.0, help="seconds the MTProto server refuses"
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=PING_TIMEOUT,
        help="the heartbeat's ping_timeout, for the worker and the hand loop",
    )
    parser.add_argument(
        "--only", choices=("websocket", "drop", "outage"), help="run one table only"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    sessions = 200 if args.quick else 1_000
    # the outage table only in the full run (or asked for), to keep --quick short
    tables = (
        [args.only] if args.only else ["websocket", "drop"] + ([] if args.quick else ["outage"])
    )
    logging.getLogger("pyrogram").setLevel(logging.CRITICAL)  # its reconnect warnings
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        undo = _cache_pseudo_files()
        try:
            for table in tables:
                _measure(table, runs, sessions, args.accounts, args.outage, args.ping_timeout)
                print()
        finally:
            undo()
    print(f"medians of {runs} back-to-back pair(s); 2 shared cores, expect noise")


def _measure(
    table: str, runs: int, sessions: int, accounts: int, outage: float, ping_timeout: float
) -> None:
    legend = "s after the failure; peak/s: accepts in the busiest 50 ms, per second"
    if table == "websocket":

        def ws(supervised: bool, seed: int) -> Herd:
            result: Herd = trio.run(
                partial(_ws_herd, sessions, supervised=supervised, rng=random.Random(seed))
            )
            return result

        title = (
            f"## {sessions:,} WebSocket sessions, the server restarts "
            f"(Backoff(0.1, jitter 1.0)); {legend}"
        )
        _table(title, _pairs(runs, ws))
        return
    refused = outage if table == "outage" else 0.0

    def mtproto(supervised: bool, seed: int) -> Herd:
        herd = partial(
            _pyrogram_herd,
            accounts,
            supervised=supervised,
            outage=refused,
            seed=seed,
            ping_timeout=ping_timeout,
        )
        result: Herd = trio.run(herd)
        return result

    what = f" and refuses connections for {refused:g} s" if refused else ""
    title = (
        f"## {accounts:,} Pyrogram accounts, the MTProto server drops every link{what} "
        f"(ACCOUNT_BACKOFF, ping 5 s / {ping_timeout:g} s); {legend}"
    )
    _table(title, _pairs(runs, mtproto))


if __name__ == "__main__":
    main()
