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
- ``loopback_servers``: for any other variant (TLS, a token, a behaviour, two
  proxies): ``await loopback_servers.enter(open_botapi_server(tls=True))`` opens
  it for the test (:class:`LoopbackServers`);
- ``running_tree``: the tree your ``tree_spec`` fixture returns, running
  (:class:`RunningTree`: its handle and every event it emitted).

Nothing heavy is imported until a fixture is used: the plugin loads in every
pytest run of an environment that has it installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import pytest

if TYPE_CHECKING:
    import trio

    import supervisor
    from workers.testing import (
        BotApiServer,
        ConnectProxy,
        MTProtoServer,
        TcpRelay,
        WebSocketTestServer,
    )

T = TypeVar("T")


@attrs.define(eq=False)
class LoopbackServers:
    """The ``loopback_servers`` fixture's value: opens servers that live for the test.

    A trio nursery (and so each loopback server) must be left by the task that
    entered it, and pytest-trio runs the test and each fixture in tasks of their
    own: a server the test opens through :meth:`enter` runs in a task of this
    fixture instead, and is closed after the test, the last opened first.
    """

    _nursery: trio.Nursery
    _held: list[tuple[trio.Event, trio.Event]] = attrs.Factory(list)

    async def enter(self, server: AbstractAsyncContextManager[T]) -> T:
        """Enter ``server`` (e.g. ``open_connect_proxy()``) until the test ends; its value.

        Args:
            server: An async context manager, not entered yet.

        Returns:
            What entering it gives (the server object).
        """
        import trio

        release, closed = trio.Event(), trio.Event()
        self._held.append((release, closed))

        async def hold(task_status: trio.TaskStatus[T]) -> None:
            try:
                async with server as value:
                    task_status.started(value)
                    await release.wait()
            finally:
                closed.set()

        value: T = await self._nursery.start(hold)
        return value

    async def _close(self) -> None:
        for release, closed in reversed(self._held):
            release.set()
            await closed.wait()


@pytest.fixture
async def loopback_servers() -> AsyncIterator[LoopbackServers]:
    """Opens loopback servers of any variant for the test (:meth:`LoopbackServers.enter`)."""
    import trio

    async with trio.open_nursery() as nursery:
        servers = LoopbackServers(nursery)
        yield servers
        await servers._close()


@pytest.fixture
async def botapi_server(loopback_servers: LoopbackServers) -> BotApiServer:
    """A loopback Bot API over plain HTTP (``server.api_base``, ``server.push(...)``)."""
    from workers.testing import open_botapi_server

    return await loopback_servers.enter(open_botapi_server())


@pytest.fixture
async def mtproto_server(loopback_servers: LoopbackServers) -> MTProtoServer:
    """A loopback MTProto server (add accounts with ``server.add_account(...)``)."""
    from workers.testing import open_mtproto_server

    return await loopback_servers.enter(open_mtproto_server())


@pytest.fixture
async def connect_proxy(loopback_servers: LoopbackServers) -> ConnectProxy:
    """A loopback HTTP CONNECT / SOCKS5 proxy that tunnels only to loopback addresses."""
    from workers.testing import open_connect_proxy

    return await loopback_servers.enter(open_connect_proxy())


@pytest.fixture
async def websocket_server(loopback_servers: LoopbackServers) -> WebSocketTestServer:
    """A loopback WebSocket server with the default behaviour (``server.url``)."""
    from workers.testing import open_websocket_test_server

    return await loopback_servers.enter(open_websocket_test_server())


@pytest.fixture
async def tcp_relay(
    loopback_servers: LoopbackServers, websocket_server: WebSocketTestServer
) -> TcpRelay:
    """A TCP relay in front of ``websocket_server`` (``relay.url``, ``freeze()``, ``cut()``)."""
    from workers.testing import open_tcp_relay

    return await loopback_servers.enter(open_tcp_relay(websocket_server.url))


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
