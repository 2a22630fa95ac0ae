"""The bridge's tree: accounts (dynamic, one_for_one) and a relay (rest_for_one).

::

    bridge                   one_for_one
    ├── accounts             dynamic: one Pyrogram account per child, each isolated
    └── relay                rest_for_one: the poller forwards into the session
        ├── exchange         WebSocket session (its own reconnect backoff)
        └── bot              Bot API long-poller
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import attrs
import trio

import specs
import workers

logger = logging.getLogger("bridge")


@attrs.define
class Endpoints:
    """Where the bridge connects: the loopback servers, or real services."""

    websocket_url: str
    bot_api_url: str  # the getUpdates URL
    accounts: list[workers.PyrogramConfig]


@attrs.define
class Bridge:
    """The application: what it does with what the workers receive."""

    registry: workers.Registry = attrs.Factory(workers.Registry)
    forwarded: int = 0
    relayed_back: int = 0
    exchange: workers.WebSocketSessionWorker | None = None
    bot: workers.PollingLoopWorker | None = None
    leak_next: bool = False  # set by the fault injector: the next update leaks a connection
    leaked: list[Any] = attrs.Factory(list)

    async def on_bot_update(self, update: workers.Update) -> None:
        """Forward a bot update's text into the WebSocket session."""
        if self.leak_next and self.bot is not None and self.bot.poll_client is not None:
            # a deliberate bug, for the demo: a streamed response nobody closes
            self.leak_next = False
            client = self.bot.poll_client
            request = client.build_request("GET", self.bot.config.api_base + "getMe")
            self.leaked.append(await client.send(request, stream=True))
        text = str(update.get("message", {}).get("text", update.get("update_id")))
        if self.exchange is not None:
            try:
                await self.exchange.send(f"bot: {text}")
                self.forwarded += 1
            except workers.NotRunning:
                logger.warning("exchange down; update %s not forwarded", update.get("update_id"))

    async def on_exchange_message(self, message: workers.WebSocketMessage) -> None:
        """Messages from the exchange: counted (a real bridge would post them to chats)."""
        self.relayed_back += 1

    async def close_leaks(self) -> None:
        """Close what the deliberate bug leaked."""
        for response in self.leaked:
            await response.aclose()


def build_tree(endpoints: Endpoints, bridge: Bridge) -> specs.SupervisorSpec:
    """The bridge's supervision tree (the accounts are added at run time).

    Each account's own supervisor, which the pool starts, joins this tree: its
    events reach the root's hooks and subscribers as ``bridge/accounts/<id>``.
    """
    exchange = workers.WebSocketSessionWorker(
        workers.WebSocketConfig(
            url=endpoints.websocket_url, ping_interval=1.0, ping_timeout=1.0, connect_timeout=3.0
        ),
        on_message=bridge.on_exchange_message,
        registry=bridge.registry,
        name="exchange",
    )
    bot = workers.PollingLoopWorker(
        workers.PollingConfig(
            url=endpoints.bot_api_url,
            poll_timeout=2.0,
            read_margin=1.0,
            connect_timeout=2.0,
            pool_timeout=0.5,
        ),
        bridge.on_bot_update,
        registry=bridge.registry,
        name="bot",
    )
    bridge.exchange, bridge.bot = exchange, bot
    relay = specs.SupervisorSpec(
        strategy=specs.REST_FOR_ONE,
        intensity=10,
        period=30,
        backoff=specs.Backoff(wait_initial=0.5, wait_max=5, wait_jitter=0.3, reset_after=10),
        children=[
            exchange.child_spec("exchange", shutdown=2.0),
            bot.child_spec("bot", shutdown=2.0),
        ],
    )
    accounts = workers.account_pool(
        registry=bridge.registry,
        backoff=specs.Backoff(wait_initial=0.5, wait_max=5, wait_jitter=0.3, reset_after=10),
        account_intensity=10,
        account_period=30,
    )
    return specs.SupervisorSpec(
        name="bridge",
        strategy=specs.ONE_FOR_ONE,
        intensity=5,
        period=30,
        children=[
            specs.ChildSpec(id="accounts", start=accounts),
            specs.ChildSpec(id="relay", start=relay),
        ],
    )


async def account_work(bridge: Bridge, names: list[str], interval: float = 1.0) -> None:
    """The application's work: each account asks for itself every second."""
    while True:
        await trio.sleep(interval)
        for name in names:
            with contextlib.suppress(workers.NotRunning):  # restarting, or down
                await bridge.registry.cast(name, ("get_me",))
