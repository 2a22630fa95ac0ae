"""Tests for operating a tree: the command line, tree view, health endpoints, notify, logs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import structlog
import trio

import specs
import supervisor
from supervisor._health import HealthApp, Metrics, serve_health
from supervisor._notify import sd_notify, watchdog_interval
from supervisor.testing import Puppets

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m supervisor`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("target", ["tests.cli_targets:tree", "tests.cli_targets:make_tree"])
def test_check_accepts_a_spec_or_a_function(target: str) -> None:
    """`check` validates a spec (or a function returning one) and exits 0."""
    result = cli("check", target)
    assert (result.returncode, result.stdout.strip()) == (0, f"{target}: ok")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.cli_targets:broken_tree", "intensity"),
        ("tests.cli_targets:not_a_tree", "not a SupervisorSpec"),
        ("tests.cli_targets:missing", "has no attribute 'missing'"),
        ("tests.no_such_module:tree", "cannot import"),
        ("no-colon", "package.module:attribute"),
    ],
)
def test_bad_targets_exit_78_without_traceback(target: str, message: str) -> None:
    """A bad spec or target exits with EXIT_BAD_SPEC, a clear message and no traceback."""
    result = cli("run", "--check", target)
    assert result.returncode == supervisor.EXIT_BAD_SPEC
    assert message in result.stderr
    assert "Traceback" not in result.stderr


async def test_runner_serves_endpoints_and_stops_on_sigterm() -> None:
    """`run --http` serves health, readiness, metrics and the tree; SIGTERM exits 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "supervisor",
        "run",
        "tests.cli_targets:tree",
        "--http",
        "127.0.0.1:0",
    ]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(  # noqa: ASYNC105 - awaited by nursery.start
                command, stderr=subprocess.PIPE, env=env, check=False, task_status=task_status
            )
        )
        assert process.stderr is not None
        output = b""
        with trio.fail_after(30):
            while (match := re.search(rb"http://127.0.0.1:(\d+)/", output)) is None:
                chunk = await process.stderr.receive_some()
                assert chunk, output
                output += chunk
            base = f"http://127.0.0.1:{int(match.group(1))}"
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.get("/readyz")).json() == {"ready": True, "waiting": []}
                tree = (await client.get("/tree")).json()
                assert [c["id"] for c in tree["children"]] == ["a", "b"]
                metrics = (await client.get("/metrics")).text
                assert 'supervisor_children{state="running",supervisor="cli"} 2.0' in metrics
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == supervisor.EXIT_OK


async def test_tree_view_renders_states_restarts_and_subtrees(autojump_clock: object) -> None:
    """The tree view shows strategy, restarts in window, child states, uptime and subtrees."""
    puppets = Puppets()
    inner = specs.SupervisorSpec(
        strategy=specs.REST_FOR_ONE,
        children=[specs.ChildSpec(id="poll", start=puppets.worker, args=("poll",))],
    )
    spec = specs.SupervisorSpec(
        name="root",
        backoff=specs.Backoff(wait_initial=5, wait_jitter=0),
        children=[
            specs.ChildSpec(id="ws", start=puppets.worker, args=("ws",)),
            specs.ChildSpec(id="pollers", start=inner),
        ],
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(10)
        puppets.exit("ws")
        await trio.sleep(2)
        text = supervisor.render_text(sup.snapshot())
    assert text.splitlines() == [
        "root one_for_one restarts=1/3 in 5s",
        "├── ws restarting restarts=0 restarting in 3.0s last=ScriptedCrash('ws')",
        "└── pollers root/pollers rest_for_one restarts=0/3 in 5s",
        "    └── poll running restarts=0 up 12.0s",
    ]


async def test_health_app_readiness_follows_children() -> None:
    """/readyz is 503 naming the child while a permanent child is down, 200 when it is back."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="root",
        children=[specs.ChildSpec(id="db", start=puppets.worker, args=("db",))],
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup, trio.open_nursery() as nursery:
        app = HealthApp(sup, Metrics(sup))
        port = await nursery.start(serve_health, app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await sup.terminate_child("db")
            response = await client.get("/readyz")
            assert (response.status_code, response.json()["waiting"]) == (503, ["root/db"])
            await sup.restart_child("db")
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
        nursery.cancel_scope.cancel()


async def test_metrics_count_restarts_by_kind_and_give_ups() -> None:
    """Metrics count exits and restarts by failure kind, and give-ups."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="m",
        intensity=1,
        children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))],
    )
    holder: list[Metrics] = []

    def hook(event: supervisor.Event) -> None:
        if holder:  # the start events come before the handle (and the metrics) exist
            holder[0](event)

    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(spec, hooks=[hook]) as sup:
            holder.append(Metrics(sup))
            puppets.exit("w")
            await trio.testing.wait_all_tasks_blocked()
            puppets.exit("w")
            await trio.sleep_forever()
    text = holder[0].exposition().decode()
    kind = 'kind="ScriptedCrash",supervisor="m"'
    assert f'supervisor_restarts_total{{child="w",{kind}}} 1.0' in text
    assert f'supervisor_child_exits_total{{child="w",{kind}}} 2.0' in text
    assert 'supervisor_give_ups_total{supervisor="m"} 1.0' in text


async def test_sd_notify_sends_a_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With NOTIFY_SOCKET set, sd_notify sends READY=1 there; the watchdog interval is half."""
    path = str(tmp_path / "notify")
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        await server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "4000000")
        assert await sd_notify("READY=1")
        assert await server.recv(64) == b"READY=1"
    assert watchdog_interval() == 2.0


async def test_sd_notify_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET, sd_notify sends nothing and says so."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not await sd_notify("READY=1")
    assert watchdog_interval() is None


async def test_structlog_hook_logs_key_values() -> None:
    """The structlog hook logs stable event names with the event's fields."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="s", children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))]
    )
    with structlog.testing.capture_logs() as logs:
        async with supervisor.open_supervisor(spec, hooks=[supervisor.structlog_hook()]):
            puppets.exit("w")
            await trio.testing.wait_all_tasks_blocked()
    names = [entry["event"] for entry in logs]
    assert names == [
        "supervisor.progress",
        "supervisor.child_terminated",
        "supervisor.progress",
        "supervisor.child_stopped",
    ]
    assert logs[1]["child"] == "w"
    assert logs[1]["supervisor"] == "s"
    assert json.dumps(logs[1], default=str)
