"""Tests for workers.testing.pytest_plugin: the fixtures the pytest11 entry point provides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

import specs
from supervisor import events
from workers.testing import TcpRelay, WebSocketTestServer
from workers.testing.pytest_plugin import RunningTree

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
