"""Tests for workers.testing.pytest_plugin: the fixtures the pytest11 entry point provides."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

import specs
from supervisor import events
from workers.testing import (
    BotApiServer,
    ConnectProxy,
    TcpRelay,
    WebSocketTestServer,
    open_botapi_server,
    open_connect_proxy,
)
from workers.testing.pytest_plugin import LoopbackServers, RunningTree

ROOT = Path(__file__).resolve().parent.parent


async def _worker(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep(1)
    raise RuntimeError("crash")


@pytest.fixture
def tree_spec() -> specs.SupervisorSpec:
    """The tree running_tree runs in this module."""
    return specs.SupervisorSpec(intensity=10, children=[specs.ChildSpec(id="w", start=_worker)])


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    """pyproject.toml registers the plugin module with pytest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plugins = project["project"]["entry-points"]["pytest11"]
    assert plugins == {"trio_supervision": "workers.testing.pytest_plugin"}


async def test_running_tree_runs_the_modules_tree_spec(
    autojump_clock: MockClock, running_tree: RunningTree
) -> None:
    """running_tree runs tree_spec and records its events."""
    await trio.sleep(2.5)
    assert [e.child for e in running_tree.of(events.ChildRestarted)] == ["w", "w"]
    assert running_tree.handle.count_children().active == 1


async def test_tcp_relay_forwards_to_the_websocket_server(
    websocket_server: WebSocketTestServer, tcp_relay: TcpRelay
) -> None:
    """The relay fixture stands in front of the WebSocket fixture."""
    stream = await trio.open_tcp_stream("127.0.0.1", tcp_relay.port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(10):
            answer = await stream.receive_some()
    assert answer.startswith(b"HTTP/1.1")


async def test_loopback_servers_opens_a_variant_for_the_test(
    loopback_servers: LoopbackServers,
) -> None:
    """enter() gives the entered server, which serves until the test ends."""
    server = await loopback_servers.enter(open_botapi_server(token="123:variant"))
    assert isinstance(server, BotApiServer)
    assert server.token == "123:variant"
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.aclose()


async def test_loopback_servers_closes_the_last_opened_first() -> None:
    """At the end of the test the servers close in the reverse order of their opening."""
    closed: list[str] = []

    @asynccontextmanager
    async def named(name: str) -> AsyncIterator[str]:
        try:
            yield name
        finally:
            closed.append(name)

    async with trio.open_nursery() as nursery:
        servers = LoopbackServers(nursery)
        assert [await servers.enter(named(n)) for n in "abc"] == ["a", "b", "c"]
        assert closed == []
        await servers._close()
    assert closed == ["c", "b", "a"]


async def test_loopback_servers_reports_a_server_that_cannot_start(
    loopback_servers: LoopbackServers,
) -> None:
    """A server whose opening fails raises from enter(); the servers opened before live on."""
    proxy = await loopback_servers.enter(open_connect_proxy())

    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise OSError("no port")
        yield  # pragma: no cover

    with pytest.raises(OSError, match="no port"):
        await loopback_servers.enter(broken())
    assert isinstance(proxy, ConnectProxy)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.aclose()
