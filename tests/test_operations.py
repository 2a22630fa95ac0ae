"""Tests for operating a tree: the command line, tree view, health endpoints, notify, logs."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import trio

import specs
import supervisor
import workers
from supervisor import _program, _treeview
from supervisor._cluster import open_keyed_pool, registering_pools
from supervisor._health import Cached, HealthApp, Metrics, not_running, serve_health, tree_fragments
from supervisor._notify import sd_notify, watchdog_interval
from supervisor._snapshot import snapshot_in_steps
from supervisor.testing import Puppets

from .cluster_harness import serving_cli

ROOT = Path(__file__).resolve().parent.parent


def cli(
    *args: str, path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m supervisor`` to completion (``path`` first on its import path)."""
    search = [str(path), str(ROOT)] if path is not None else [str(ROOT)]
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(search)},
        cwd=path,
        timeout=60,
        check=False,
    )


def one_line_mistake(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the run ended as a user mistake (exit 78, one line, no traceback); return it."""
    assert result.returncode == supervisor.EXIT_BAD_SPEC, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


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
    assert message in one_line_mistake(cli("run", "--check", target))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "tests.cli_targets:raising_factory",
            "tests.cli_targets:raising_factory() raised tests/cli_targets.py:",
        ),
        ("tests.cli_targets:raising_factory", "FileNotFoundError: no config file"),
        ("tests.cli_targets:needs_arguments", "needs arguments (config)"),
        ("tests.cli_targets:async_tree", "is an async function"),
        ("sys:exit", "sys:exit() raised SystemExit"),
    ],
)
def test_bad_functions_are_one_line_mistakes(target: str, message: str) -> None:
    """A function that raises, needs arguments, is async or exits is named in one line."""
    assert message in one_line_mistake(cli("check", target))


BAD_MODULES = {
    "typo": ("import specs\n\ntree = specs.SupervisorSpec(intensty=3)\n", "typo.py:3: TypeError"),
    "syntax": ("import specs\n\ntree = specs.SupervisorSpec(\n", "syntax.py:3: SyntaxError"),
    "boom": ("x = 1\nraise RuntimeError('no database')\n", "boom.py:2: RuntimeError: no database"),
    "exits": ("import sys\nsys.exit(3)\n", "exits.py:2: SystemExit: 3"),
    "deps": ("import no_such_dependency\n", "deps.py:1: ModuleNotFoundError"),
}


@pytest.mark.parametrize("name", sorted(BAD_MODULES))
def test_bad_modules_name_the_file_and_line(tmp_path: Path, name: str) -> None:
    """A typo'd field, syntax error or import-time failure is one line with file:line."""
    source, message = BAD_MODULES[name]
    (tmp_path / f"{name}.py").write_text(source)
    line = one_line_mistake(cli("check", f"{name}:tree", path=tmp_path))
    assert line.startswith(f"invalid supervision spec: cannot import '{name}': ")
    assert message in line


def test_typo_names_the_field(tmp_path: Path) -> None:
    """A typo'd field is named as the attrs constructor reports it."""
    (tmp_path / "typo.py").write_text(BAD_MODULES["typo"][0])
    assert "'intensty'" in one_line_mistake(cli("check", "typo:tree", path=tmp_path))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """With --debug, the mistake comes with its traceback (and still exits 78)."""
    (tmp_path / "boom.py").write_text(BAD_MODULES["boom"][0])
    result = cli("check", "--debug", "boom:tree", path=tmp_path)
    assert result.returncode == supervisor.EXIT_BAD_SPEC
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("RuntimeError: no database")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--log-level", "LOUD"), "unknown log level 'LOUD'"),
        (("--grace", "-1"), "expected a positive number of seconds"),
        (("--http", "localhost:http"), "expected HOST:PORT"),
    ],
)
def test_bad_options_are_one_line_mistakes(option: tuple[str, str], message: str) -> None:
    """A bad option value exits 78 with one line naming it, before anything runs."""
    line = one_line_mistake(cli("run", "tests.cli_targets:tree", *option))
    assert message in line


def test_busy_http_port_is_a_one_line_mistake() -> None:
    """A port already in use exits 78 with one line naming the address, before any child."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("run", "tests.cli_targets:tree", "--http", f"127.0.0.1:{port}")
    line = one_line_mistake(result)
    assert line.startswith(f"cannot serve HTTP on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("option", "module", "message"),
    [
        ("--tree", "rich", "--tree needs 'rich'"),
        ("--http", "hypercorn", "--http needs 'hypercorn'"),
        ("--http", "prometheus_client", "--http needs 'prometheus_client'"),
    ],
)
def test_missing_extra_names_it(tmp_path: Path, option: str, module: str, message: str) -> None:
    """Without the [ops] extra, --tree/--http say which package and extra to install."""
    (tmp_path / module).mkdir()
    # as if not installed: the import fails as for a missing module
    missing = f'raise ModuleNotFoundError("No module named {module!r}", name={module!r})\n'
    (tmp_path / module / "__init__.py").write_text(missing)
    args = [option] if option == "--tree" else [option, "127.0.0.1:0"]
    line = one_line_mistake(cli("run", "tests.cli_targets:tree", *args, path=tmp_path))
    assert line.startswith(message)
    assert line.endswith("pip install 'trio-supervision[ops]'")


async def test_runner_serves_endpoints_and_stops_on_sigterm() -> None:
    """`run --http` serves health, readiness, metrics and the tree; SIGTERM exits 0."""
    token = "s3cret-token"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUPERVISOR_HTTP_TOKEN": token}
    command = [
        sys.executable,
        "-m",
        "supervisor",
        "run",
        "tests.cli_targets:tree",
        "--http",
        "127.0.0.1:0",
        "--log-level",
        "debug",
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
                assert (await client.get("/readyz")).json() == {"ready": True, "not_running": {}}
                assert (await client.get("/tree")).status_code == 401
                client.headers["authorization"] = f"Bearer {token}"
                tree = (await client.get("/tree")).json()
                assert [c["id"] for c in tree["children"]] == ["a", "b"]
                metrics = (await client.get("/metrics")).text
                assert 'supervisor_children{state="running",supervisor="cli"} 2.0' in metrics
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == supervisor.EXIT_OK
            async for chunk in process.stderr:
                output += chunk
        assert token.encode() not in output


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
        "├── ws restarting restarts=0 restarting in 3.0s failures=1 (unknown 1) "
        "last=ScriptedCrash('ws')",
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
            assert response.status_code == 503
            assert response.json()["not_running"] == {"root/db": "stopped"}
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


async def test_metrics_count_failures_by_kind_and_action() -> None:
    """supervisor_failures_total counts each failure by its kind and the action taken."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="m",
        children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))],
        failure_policy=specs.FailurePolicy(rules={"unknown": specs.KindRule(budget=1)}),
    )
    holder: list[Metrics] = []

    def hook(event: supervisor.Event) -> None:
        if holder:
            holder[0](event)

    async with supervisor.open_supervisor(spec, hooks=[hook]) as sup:
        holder.append(Metrics(sup))
        puppets.exit("w")
        await trio.testing.wait_all_tasks_blocked()
        puppets.exit("w")
        await trio.testing.wait_all_tasks_blocked()
    text = holder[0].exposition().decode()
    labels = 'failure_kind="unknown",supervisor="m"'
    assert f'supervisor_failures_total{{action="restart",{labels}}} 1.0' in text
    assert f'supervisor_failures_total{{action="stay_down",{labels}}} 1.0' in text


def recoveries(metrics: Metrics, outcome: str) -> float:
    """``supervisor_recoveries_total`` of supervisor "m"'s unknown failures, by ``outcome``."""
    labels = {"supervisor": "m", "failure_kind": "unknown", "outcome": outcome}
    value = metrics.registry.get_sample_value("supervisor_recoveries_total", labels)
    return 0.0 if value is None else value


async def test_metrics_count_recoveries_that_worked_and_that_did_not(
    autojump_clock: object,
) -> None:
    """A failure then a healthy run is a recovery; a failure then a quick re-failure is not."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="m",
        intensity=10,
        children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))],
        failure_policy=specs.FailurePolicy(reset_after=5),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        metrics = Metrics(sup)
        assert puppets.exit("w")
        await trio.sleep(6)  # the restarted child runs healthy past reset_after
        assert (recoveries(metrics, "recovered"), recoveries(metrics, "not_recovered")) == (1, 0)
        assert puppets.exit("w")  # judges the first restart: worked, counted once
        await trio.testing.wait_all_tasks_blocked()
        assert puppets.exit("w")  # at once: the second restart did not work
        await trio.testing.wait_all_tasks_blocked()
        assert (recoveries(metrics, "recovered"), recoveries(metrics, "not_recovered")) == (1, 1)


async def test_metrics_keep_the_recoveries_of_a_deleted_child(autojump_clock: object) -> None:
    """Recovery totals only grow: a child's counts stay after it is deleted."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="m",
        children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))],
        failure_policy=specs.FailurePolicy(reset_after=5),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        metrics = Metrics(sup)
        assert puppets.exit("w")
        await trio.sleep(6)
        assert recoveries(metrics, "recovered") == 1
        await sup.terminate_child("w")
        await sup.delete_child("w")
        assert recoveries(metrics, "recovered") == 1


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


async def _structlog_of_an_exit(wait: float = 0) -> tuple[MutableMapping[str, Any], float]:
    """The structlog entry of a child's exit after ``wait`` s, and trio's time of the exit."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="s", children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))]
    )
    with structlog.testing.capture_logs() as logs:
        async with supervisor.open_supervisor(spec, hooks=[supervisor.structlog_hook()]):
            await trio.sleep(wait)
            now = trio.current_time()
            puppets.exit("w")
            await trio.testing.wait_all_tasks_blocked()
    [exited] = [entry for entry in logs if entry["event"] == "supervisor.child_terminated"]
    return exited, now


async def test_structlog_hook_says_the_action_in_a_plain_word() -> None:
    """A child's exit is logged with action="restart", not the enum's repr."""
    exited, _ = await _structlog_of_an_exit()
    assert exited["action"] == "restart"


async def test_structlog_hook_logs_where_the_supervisor_sits() -> None:
    """A subtree's event is logged with its path in the tree beside its supervisor's name."""
    puppets = Puppets()
    inner = specs.SupervisorSpec(
        name="inner", children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))]
    )
    spec = specs.SupervisorSpec(name="root", children=[specs.ChildSpec(id="sub", start=inner)])
    with structlog.testing.capture_logs() as logs:
        async with supervisor.open_supervisor(spec, hooks=[supervisor.structlog_hook()]):
            puppets.exit("w")
            await trio.testing.wait_all_tasks_blocked()
    [exited] = [entry for entry in logs if entry["event"] == "supervisor.child_terminated"]
    assert (exited["supervisor"], exited["path"], exited["child"]) == ("inner", "root/sub", "w")
    assert {entry["path"] for entry in logs} == {"root", "root/sub"}


async def test_structlog_hook_gives_wall_clock_beside_trio_time(autojump_clock: object) -> None:
    """Each entry has trio's time and the wall-clock time as ISO 8601 UTC."""
    before = datetime.datetime.now(datetime.UTC)
    # virtual: trio's clock moves 100 s, the wall clock hardly
    exited, now = await _structlog_of_an_exit(wait=100)
    assert exited["time"] == now
    stamp = datetime.datetime.fromisoformat(str(exited["timestamp"]))
    assert stamp.utcoffset() == datetime.timedelta(0)
    assert before <= stamp <= datetime.datetime.now(datetime.UTC)


async def _revoked(
    cue: trio.Event, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ready, then exits with AuthRevoked (a normal exit) on cue."""
    task_status.started()
    await cue.wait()
    raise workers.AuthRevoked(cause="HTTP 401")


class _RevokedWorker(workers.Worker):
    """A worker actor whose credentials stop working on cue."""

    def __init__(self, cue: trio.Event) -> None:
        super().__init__(registry=workers.Registry())
        self.cue = cue

    async def run(self, ctx: workers.Context) -> None:
        await self.cue.wait()
        raise workers.AuthRevoked(cause="session revoked")


async def readiness_around(
    spec: specs.SupervisorSpec, act: Callable[[], object]
) -> list[dict[str, str]]:
    """``not_running()`` of the started tree, and again a second after ``act()``."""
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        before = not_running(sup)
        act()
        await trio.sleep(1)
        return [before, not_running(sup)]


async def test_readiness_counts_a_transient_worker_down_after_auth_revoked(
    autojump_clock: object,
) -> None:
    """A TRANSIENT worker stopped by AuthRevoked (a normal exit) holds readiness back."""
    puppets, cue = Puppets(), trio.Event()
    spec = specs.SupervisorSpec(
        name="root",
        children=[
            specs.ChildSpec(id="db", start=puppets.worker, args=("db",)),
            specs.ChildSpec(id="bot", start=_revoked, args=(cue,), restart=specs.TRANSIENT),
        ],
    )
    assert await readiness_around(spec, cue.set) == [{}, {"root/bot": "stopped"}]


async def test_readiness_counts_a_transient_subtree_that_gave_up(autojump_clock: object) -> None:
    """A TRANSIENT subtree that gave up is down for good: not ready."""
    puppets = Puppets()
    inner = specs.SupervisorSpec(
        intensity=0, children=[specs.ChildSpec(id="w", start=puppets.worker, args=("w",))]
    )
    spec = specs.SupervisorSpec(
        name="root", children=[specs.ChildSpec(id="sub", start=inner, restart=specs.TRANSIENT)]
    )
    after = await readiness_around(spec, lambda: puppets.exit("w"))
    assert after == [{}, {"root/sub": "stopped"}]


async def test_readiness_looks_inside_a_reconnecting_child_spec(autojump_clock: object) -> None:
    """A worker stopped inside its reconnecting_child_spec subtree is named by its path."""
    cue = trio.Event()
    spec = specs.SupervisorSpec(
        name="root", children=[_RevokedWorker(cue).reconnecting_child_spec("feed")]
    )
    assert await readiness_around(spec, cue.set) == [{}, {"root/feed/feed": "stopped"}]


async def test_readiness_counts_a_stopped_significant_child(autojump_clock: object) -> None:
    """A significant child that exited, while its siblings keep the tree up, is not ready."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="root",
        auto_shutdown=specs.ALL_SIGNIFICANT,
        children=[
            specs.ChildSpec(
                id=name,
                start=puppets.worker,
                args=(name,),
                restart=specs.TRANSIENT,
                significant=True,
            )
            for name in ("job1", "job2")
        ],
    )
    after = await readiness_around(spec, lambda: puppets.exit("job1", "normal"))
    assert after == [{}, {"root/job1": "stopped"}]


async def test_readiness_ignores_an_exited_temporary_child(autojump_clock: object) -> None:
    """A temporary child is forgotten when it exits, so it never holds readiness back."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="root",
        children=[
            specs.ChildSpec(
                id="once", start=puppets.worker, args=("once",), restart=specs.TEMPORARY
            )
        ],
    )
    assert await readiness_around(spec, lambda: puppets.exit("once")) == [{}, {}]


async def test_tree_and_metrics_need_the_token_health_and_readiness_do_not() -> None:
    """With a token, /tree and /metrics answer 401 without it; probes stay open."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="root", children=[specs.ChildSpec(id="db", start=puppets.worker, args=("db",))]
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup, trio.open_nursery() as nursery:
        app = HealthApp(sup, Metrics(sup), token="t0ken")
        assert "t0ken" not in repr(app)
        port = await nursery.start(serve_health, app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in ("/healthz", "/readyz"):
                assert (await client.get(path)).status_code == 200
            for path in ("/tree", "/metrics"):
                assert (await client.get(path)).status_code == 401
                wrong = {"authorization": "Bearer t0kem"}
                assert (await client.get(path, headers=wrong)).status_code == 401
                right = {"authorization": "Bearer t0ken"}
                assert (await client.get(path, headers=right)).status_code == 200
        nursery.cancel_scope.cancel()


async def test_cached_body_is_rebuilt_at_most_once_per_max_age(autojump_clock: object) -> None:
    """Requests within max_age share one build; the next one after it rebuilds."""
    bodies = iter([b"one", b"two"])

    async def build() -> bytes:
        return next(bodies)

    cached = Cached(build, max_age=1.0)
    assert [await cached.get() for _ in range(3)] == [b"one"] * 3
    await trio.sleep(1.0)
    assert (await cached.get(), cached.builds) == (b"two", 2)


async def test_cached_body_is_served_stale_while_one_build_runs(autojump_clock: object) -> None:
    """During a slow rebuild, other requests get the previous body at once; one build runs."""
    bodies = iter([b"old", b"new"])

    async def build() -> bytes:
        await trio.sleep(5)
        return next(bodies)

    cached = Cached(build, max_age=1.0, budget=1.0)  # kept as long as the build took
    assert await cached.get() == b"old"
    await trio.sleep(5.0)
    answers: list[tuple[float, bytes]] = []

    async def request() -> None:
        body = await cached.get()
        answers.append((trio.current_time(), body))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            nursery.start_soon(request)
    assert sorted(answers) == [(start, b"old")] * 3 + [(start + 5, b"new")]
    assert cached.builds == 2


async def test_cached_body_of_a_slow_build_is_kept_longer(autojump_clock: object) -> None:
    """A build that takes 0.5 s is repeated only after 50 s: building takes 1% of the loop."""

    async def build() -> float:
        await trio.sleep(0.5)
        return trio.current_time()

    cached = Cached(build, max_age=1.0, budget=0.01)
    first = await cached.get()
    await trio.sleep(49)
    assert await cached.get() == first
    await trio.sleep(1)
    assert await cached.get() > first


async def test_heavy_responses_are_paced_one_at_a_time(autojump_clock: object) -> None:
    """Concurrent /metrics requests are answered one after another, ``interval`` apart."""
    app = HealthApp(None, Metrics(), interval=0.25)
    sent: list[float] = []

    async def receive() -> dict[str, object]:
        raise AssertionError

    async def send(message: object) -> None:
        assert isinstance(message, dict)
        if message["type"] == "http.response.start":
            sent.append(trio.current_time())

    scope = {"type": "http", "path": "/metrics", "headers": []}
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(app, scope, receive, send)
    assert [round(t - start, 6) for t in sent] == [0, 0.25, 0.5]


async def test_tree_fragments_join_to_the_snapshot_json(autojump_clock: object) -> None:
    """The stepwise /tree serialisation is exactly json.dumps of the snapshot, subtrees too."""
    puppets = Puppets()
    inner = specs.SupervisorSpec(
        children=[specs.ChildSpec(id="poll", start=puppets.worker, args=("poll",))]
    )
    spec = specs.SupervisorSpec(
        name="root",
        children=[
            specs.ChildSpec(id="ws", start=puppets.worker, args=("ws",)),
            specs.ChildSpec(id="pollers", start=inner),
        ],
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("ws")
        await trio.sleep(3)
        snapshot = sup.snapshot()
    assert "".join(tree_fragments(snapshot)) == json.dumps(snapshot.to_dict())


async def test_tree_is_taken_in_steps_and_matches_the_snapshot(autojump_clock: object) -> None:
    """/tree's picture of 200 children lets the loop run between steps, and equals snapshot()."""
    puppets = Puppets()
    inner = specs.SupervisorSpec(
        children=[
            specs.ChildSpec(id=f"poll{i}", start=puppets.worker, args=(f"poll{i}",))
            for i in range(50)
        ]
    )
    spec = specs.SupervisorSpec(
        name="root",
        children=[
            *(
                specs.ChildSpec(id=f"w{i}", start=puppets.worker, args=(f"w{i}",))
                for i in range(150)
            ),
            specs.ChildSpec(id="pollers", start=inner),
        ],
    )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await trio.lowlevel.checkpoint()
            ticks += 1

    async with supervisor.open_supervisor(spec, hooks=[]) as sup, trio.open_nursery() as nursery:
        puppets.exit("w3")
        await trio.sleep(3)
        nursery.start_soon(tick)
        stepped = await snapshot_in_steps(sup._core, step=20)
        stepped_ticks = ticks
        whole = sup.snapshot()
        nursery.cancel_scope.cancel()
    assert stepped == whole  # nothing changed meanwhile: the same picture
    # 200 children in steps of 20: the loop ran between them (all at once: not at all)
    assert stepped_ticks >= 5


async def test_log_lines_print_through_the_live_views_console(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: object
) -> None:
    """With the live view on, a log record goes through the view's console, above the tree."""
    import io
    import logging

    from rich.console import Console

    buffer = io.StringIO()
    view_console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    monkeypatch.setattr(_treeview, "console", lambda: view_console)
    puppets = Puppets()
    spec = specs.SupervisorSpec(
        name="root", children=[specs.ChildSpec(id="db", start=puppets.worker, args=("db",))]
    )
    handler = _treeview.log_handler()
    record = logging.LogRecord("supervisor", logging.WARNING, __file__, 1, "a log line", (), None)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(_treeview.live_view, sup, _treeview.TreeViewHook())
        await trio.sleep(1.5)
        handler.emit(record)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    lines = [
        re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
        for line in re.split(r"[\r\n]", buffer.getvalue())
    ]
    logged = [line for line in lines if "a log line" in line]
    assert logged, lines
    assert all("running" not in line for line in logged), logged


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("db", False)],
)
def test_only_loopback_binds_count_as_private(host: str, loopback: bool) -> None:
    """The runner warns about any bind but loopback: 0.0.0.0 or a name may be reachable."""
    assert _program._loopback(host) is loopback


async def test_before_the_tree_is_up_it_is_alive_but_not_ready() -> None:
    """While the tree starts, /healthz is 200 (starting), /readyz and /tree are 503."""
    app = HealthApp(None, Metrics())

    async def status(path: str) -> tuple[int, bytes]:
        code, _, body = await app.respond({"type": "http", "path": path, "headers": []})
        return code, body

    assert (await status("/healthz"))[0] == 200
    assert json.loads((await status("/healthz"))[1])["status"] == "starting"
    assert json.loads((await status("/readyz"))[1]) == {
        "ready": False,
        "not_running": {"(tree)": "starting"},
    }
    assert (await status("/readyz"))[0] == (await status("/tree"))[0] == 503


def _pool_child(key: str) -> specs.ChildSpec:
    return specs.ChildSpec(id="session", start=Puppets().worker, args=(key,))


async def test_open_keyed_pools_show_in_metrics_tree_and_tree_view(autojump_clock: object) -> None:
    """A keyed pool open in the program adds its cluster view to /metrics, /tree and the view."""
    spec = specs.SupervisorSpec(name="root", children=[])
    with registering_pools() as pools:
        async with (
            supervisor.open_supervisor(spec, hooks=[]) as sup,
            open_keyed_pool(["k-0", "k-1"], _pool_child, hooks=[], name="accounts"),
        ):
            await trio.sleep(1)
            app = HealthApp(sup, Metrics(sup, pools=pools), pools=pools)
            scope = {"type": "http", "headers": []}
            _, _, metrics = await app.respond({**scope, "path": "/metrics"})
            _, _, body = await app.respond({**scope, "path": "/tree"})
            text = _treeview.render_text(sup.snapshot(), cluster=pools.summaries())
    exposition = metrics.decode()
    for line in (
        'supervisor_cluster_member_info{member="local",mode="embedded",pool="accounts"} 1.0',
        'supervisor_cluster_keys{member="local",pool="accounts"} 2.0',
        'supervisor_cluster_local_keys{pool="accounts",state="running"} 2.0',
        'supervisor_cluster_safe_for_seconds{pool="accounts"} +Inf',
        'supervisor_cluster_takeovers_total{pool="accounts"} 2.0',
    ):
        assert line in exposition
    tree = json.loads(body)
    assert tree["name"] == "root"
    [view] = tree["cluster"]
    assert (view["member"], view["handoffs"]) == ("local", [])
    assert view["keys_per_member"] == {"local": 2}
    assert text.splitlines()[1:] == [
        "└── cluster accounts member local (embedded) safe members=1 keys=2 here: running=2 "
        "pending=0 takeovers=2",
        "    └── local: 2 keys",
    ]


async def test_without_a_pool_the_tree_has_no_cluster_part(autojump_clock: object) -> None:
    """/tree stays the tree's snapshot, exactly, when no keyed pool is open."""
    spec = specs.SupervisorSpec(name="root", children=[])
    with registering_pools() as pools:
        async with supervisor.open_supervisor(spec, hooks=[]) as sup:
            app = HealthApp(sup, Metrics(sup, pools=pools), pools=pools)
            _, _, body = await app.respond({"type": "http", "headers": [], "path": "/tree"})
            assert json.loads(body) == sup.snapshot().to_dict()


async def test_tree_view_names_handoffs_and_an_unsafe_member() -> None:
    """The tree view marks a member that may not run children, and lists the handoffs."""
    summary = {
        "name": "accounts", "member": "b", "mode": "etcd", "safe": False, "safe_for": 0.0,
        "members": {"a": 1.0}, "keys": 3, "keys_per_member": {"a": 1, "b": 2},
        "handoffs": ["k-1", "k-2"], "pending": [], "states": {"stopping": 2}, "takeovers": 2,
    }  # fmt: skip
    snapshot = supervisor.SupervisorSnapshot(
        name="root", strategy="one_for_one", intensity=3, period=5.0, restarts_in_window=0,
        time=0.0, children=(),
    )  # fmt: skip
    assert _treeview.render_text(snapshot, cluster=[summary]).splitlines()[1:] == [
        "└── cluster accounts member b (etcd) UNSAFE (children stopped) members=1 keys=3 "
        "here: stopping=2 pending=0 takeovers=2",
        "    ├── a: 1 keys",
        "    ├── b (gone): 2 keys",
        "    └── handing over 2: k-1, k-2",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tests.cli_targets:tree", "--etcd", "http://127.0.0.1:1"), "need a KeyedPoolSpec"),
        (("tests.cli_targets:pool", "--member", "m1"), "needs --etcd"),
        (("tests.cli_targets:pool", "--etcd", "ftp://x"), "endpoints must be http(s) URLs"),
        (("tests.cli_targets:tree", "--max-starting", "2"), "need a KeyedPoolSpec"),
        (("tests.cli_targets:pool", "--max-starting", "0"), "expected a whole number >= 1"),
    ],
)
def test_bad_cluster_options_are_one_line_mistakes(args: tuple[str, ...], message: str) -> None:
    """Cluster options that cannot work end the run with one line naming them, exit 78."""
    env = {"TRIO_SUPERVISION_ETCD": ""}
    assert message in one_line_mistake(cli("run", *args, env=env))


def test_a_bad_max_starting_in_the_environment_is_a_one_line_mistake() -> None:
    """A bad $TRIO_SUPERVISION_MAX_STARTING ends the run with one line naming it, exit 78."""
    env = {"TRIO_SUPERVISION_ETCD": "", "TRIO_SUPERVISION_MAX_STARTING": "lots"}
    line = one_line_mistake(cli("run", "tests.cli_targets:pool", env=env))
    assert "TRIO_SUPERVISION_MAX_STARTING must be a whole number >= 1 ('lots')" in line


def test_help_documents_the_cluster_options() -> None:
    """`run --help` names --etcd, --member, --max-starting and the variables behind them."""
    text = cli("run", "--help").stdout
    words = ("--etcd", "--member", "--max-starting", "TRIO_SUPERVISION_ETCD")
    for word in (*words, "TRIO_SUPERVISION_MEMBER", "TRIO_SUPERVISION_MAX_STARTING"):
        assert word in text


async def test_runner_runs_a_keyed_pool_embedded() -> None:
    """`run module:pool` without a cluster runs every key here and serves the cluster's view."""
    args = ("tests.cli_targets:pool", "--max-starting", "2")
    async with (
        serving_cli(*args, env={"TRIO_SUPERVISION_ETCD": ""}) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        with trio.fail_after(30):  # a hang guard: the keys start after the HTTP server
            # another process: nothing to wait on but its answers
            while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.05)
            view = (await client.get("/tree")).json()
        assert [c["id"] for c in view["children"]] == ["keys"]
        [pool] = view["cluster"]
        assert (pool["name"], pool["mode"], pool["keys"]) == ("accounts", "embedded", 3)
        assert pool["max_starting"] == 2
