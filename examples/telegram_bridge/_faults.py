"""The demo's fault schedule against the loopback servers, and the check that each recovered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

import workers
from supervisor import events
from workers.testing import (
    BotApiServer,
    MTProtoServer,
    RpcFailure,
    TcpRelay,
    WebSocketTestServer,
    open_botapi_server,
    open_mtproto_server,
    open_tcp_relay,
    open_websocket_test_server,
)

from ._tree import Bridge, Endpoints

#: The demo's accounts (the faults flood bob and revoke carol).
ACCOUNTS = ("alice", "bob", "carol")

logger = logging.getLogger("bridge.faults")


@attrs.define
class Fault:
    """One injected fault: when, what, and which exit and recovery prove it was handled."""

    at: float
    name: str
    inject: Callable[[], Awaitable[None]]
    child: str  # the child that must exit...
    failure: type[BaseException]  # ...with this failure...
    stays_down: bool = False  # ...and then restart, or (AuthRevoked) stay down, visibly
    injected_at: float | None = None
    detected_after: float | None = None
    recovered_after: float | None = None

    @property
    def handled(self) -> bool:
        """Detected, and recovered (or left down, as designed)."""
        if self.detected_after is None:
            return False
        return self.stays_down or self.recovered_after is not None


@attrs.define
class Loopback:
    """The embedded servers the demo runs against."""

    mtproto: MTProtoServer
    accounts: dict[str, workers.testing.Account]
    websocket: WebSocketTestServer
    relay: TcpRelay
    botapi: BotApiServer


@asynccontextmanager
async def open_loopback() -> AsyncIterator[tuple[Loopback, Endpoints]]:
    """The embedded servers, one account for each of :data:`ACCOUNTS`, and their endpoints."""
    async with (
        open_mtproto_server() as mtproto,
        open_websocket_test_server() as websocket,
        open_tcp_relay(websocket.url) as relay,
        open_botapi_server() as botapi,
    ):
        accounts = {name: mtproto.new_account(first_name=name.title()) for name in ACCOUNTS}
        endpoints = Endpoints(
            websocket_url=relay.url,
            bot_api_url=botapi.method_url("getUpdates"),
            accounts=[
                workers.PyrogramConfig(
                    name=name,
                    api_id=account.api_id,
                    api_hash="loopback",
                    session_string=account.session_string,
                    connect_timeout=3.0,
                    ping_interval=1.0,
                    ping_timeout=1.0,
                )
                for name, account in accounts.items()
            ],
        )
        yield Loopback(mtproto, accounts, websocket, relay, botapi), endpoints


def schedule(loopback: Loopback, bridge: Bridge, speed: float = 1.0) -> list[Fault]:
    """The faults, every few seconds (``speed`` > 1 runs them sooner)."""

    async def flood_wait() -> None:
        loopback.mtproto.fail_next(loopback.accounts["bob"], None, RpcFailure.flood_wait(3))

    async def close_frame() -> None:
        await loopback.websocket.close_all(1011, "internal error")

    async def black_hole() -> None:
        loopback.relay.freeze()
        await trio.sleep(2.5 / speed)  # long enough for the heartbeat to notice
        loopback.relay.thaw()

    async def pool_timeout() -> None:
        bridge.leak_next = True
        loopback.botapi.push(message={"text": "leak a connection"})
        loopback.botapi.push(message={"text": "and wait for the pool"})

    async def revoke() -> None:
        loopback.mtproto.revoke(loopback.accounts["carol"])

    def at(seconds: float) -> float:
        return seconds / speed

    return [
        Fault(at(4), "FloodWait on bob", flood_wait, "client", workers.FloodWait),
        Fault(at(9), "close frame 1011", close_frame, "exchange", workers.ConnectionLost),
        Fault(at(14), "black-holed link", black_hole, "exchange", workers.HeartbeatTimeout),
        Fault(at(20), "PoolTimeout", pool_timeout, "bot", workers.PoolExhausted),
        Fault(
            at(25), "revoked account carol", revoke, "client", workers.AuthRevoked, stays_down=True
        ),
    ]


@attrs.define
class Watcher:
    """An event hook matching each injected fault to its exit and its recovery."""

    faults: list[Fault]
    pending: dict[str, Fault] = attrs.Factory(dict)  # supervisor/child -> fault awaiting restart

    def __call__(self, event: events.Event) -> None:
        match event:
            case events.ChildExited(supervisor=sup, child=child, reason=reason, time=now):
                for fault in self.faults:
                    if (
                        fault.injected_at is not None
                        and fault.detected_after is None
                        and child == fault.child
                        and isinstance(reason.exception, fault.failure)
                    ):
                        fault.detected_after = now - fault.injected_at
                        self.pending[f"{sup}/{child}"] = fault
                        break
            case events.ChildRestarted(supervisor=sup, child=child, time=now):
                recovered = self.pending.pop(f"{sup}/{child}", None)
                if recovered is not None and recovered.injected_at is not None:
                    recovered.recovered_after = now - recovered.injected_at
            case _:
                pass


async def inject(faults: list[Fault]) -> None:
    """Inject each fault at its time."""
    start = trio.current_time()
    for fault in faults:
        await trio.sleep_until(start + fault.at)
        fault.injected_at = trio.current_time()
        logger.warning("injecting: %s", fault.name)
        await fault.inject()


def report(faults: list[Fault]) -> str:
    """A table of the faults and how each was handled."""
    lines = [f"{'fault':24} {'detected after':>15} {'recovered after':>16}  result"]
    for fault in faults:
        detected = "-" if fault.detected_after is None else f"{fault.detected_after:.3f}s"
        if fault.stays_down:
            recovered = "stays down"
        else:
            recovered = "-" if fault.recovered_after is None else f"{fault.recovered_after:.3f}s"
        result = (
            "ok"
            if fault.handled
            else ("not injected" if fault.injected_at is None else "NOT HANDLED")
        )
        lines.append(f"{fault.name:24} {detected:>15} {recovered:>16}  {result}")
    return "\n".join(lines)
