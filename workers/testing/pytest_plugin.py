"""The pytest plugin of trio-supervision: loopback servers and a running tree as fixtures.

Registered through the ``pytest11`` entry point (``trio_supervision``), so a
project that installs ``trio-supervision[testing]`` gets these fixtures in
every test module; the fixtures are async, for trio tests (pytest-trio's
``trio_mode``, or ``@pytest.mark.trio``). Each server lives for one test, on
127.0.0.1, on a port of its own:

- ``botapi_server``: a Bot API (:func:`~workers.testing.open_botapi_server`);
- ``mtproto_server``: an MTProto server (:func:`~workers.testing.open_mtproto_server`);
- ``connect_proxy``: an HTTP CONNECT and SOCKS5 proxy (:func:`~workers.testing.open_connect_proxy`);
- ``websocket_server``: a WebSocket server (:func:`~workers.testing.open_websocket_test_server`);
- ``tcp_relay``: a TCP relay in front of ``websocket_server``, to freeze or cut
  the link (:func:`~workers.testing.open_tcp_relay`);
- ``running_tree``: the tree your ``tree_spec`` fixture returns, running
  (:class:`RunningTree`: its handle and every event it emitted).

Nothing heavy is imported until a fixture is used: the plugin loads in every
pytest run of an environment that has it installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import pytest

if TYPE_CHECKING:
    import supervisor
    from workers.testing import (
        BotApiServer,
        ConnectProxy,
        MTProtoServer,
        TcpRelay,
        WebSocketTestServer,
    )


@pytest.fixture
async def botapi_server() -> AsyncIterator[BotApiServer]:
    """A loopback Bot API over plain HTTP (``server.api_base``, ``server.push(...)``)."""
    from workers.testing import open_botapi_server

    async with open_botapi_server() as server:
        yield server


@pytest.fixture
async def mtproto_server() -> AsyncIterator[MTProtoServer]:
    """A loopback MTProto server (add accounts with ``server.add_account(...)``)."""
    from workers.testing import open_mtproto_server

    async with open_mtproto_server() as server:
        yield server


@pytest.fixture
async def connect_proxy() -> AsyncIterator[ConnectProxy]:
    """A loopback HTTP CONNECT / SOCKS5 proxy that tunnels only to loopback addresses."""
    from workers.testing import open_connect_proxy

    async with open_connect_proxy() as proxy:
        yield proxy


@pytest.fixture
async def websocket_server() -> AsyncIterator[WebSocketTestServer]:
    """A loopback WebSocket server with the default behaviour (``server.url``)."""
    from workers.testing import open_websocket_test_server

    async with open_websocket_test_server() as server:
        yield server


@pytest.fixture
async def tcp_relay(websocket_server: WebSocketTestServer) -> AsyncIterator[TcpRelay]:
    """A TCP relay in front of ``websocket_server`` (``relay.url``, ``freeze()``, ``cut()``)."""
    from workers.testing import open_tcp_relay

    async with open_tcp_relay(websocket_server.url) as relay:
        yield relay


@attrs.define
class RunningTree:
    """The ``running_tree`` fixture's value.

    Attributes:
        handle: The root's handle (``start_child``, ``snapshot()``, ...).
        events: Every event of the tree, subtrees included, in order.
    """

    handle: Any
    events: list[supervisor.Event] = attrs.Factory(list)

    def of(self, kind: type[Any]) -> list[Any]:
        """The events of one type (``running_tree.of(supervisor.events.ChildRestarted)``)."""
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def tree_spec() -> Any:
    """The tree ``running_tree`` runs: override this fixture in your test module."""
    msg = "define a `tree_spec` fixture returning your SupervisorSpec to use `running_tree`"
    raise pytest.UsageError(msg)


@pytest.fixture
async def running_tree(tree_spec: Any) -> AsyncIterator[RunningTree]:
    """Your ``tree_spec``, running for the test (shut down in order after it)."""
    import supervisor

    running = RunningTree(handle=None)
    async with supervisor.open_supervisor(tree_spec, hooks=[running.events.append]) as handle:
        running.handle = handle
        yield running
