"""Tests of the optional dependencies: the core runs without any extra, and a name whose
extra is missing raises ``MissingExtra`` naming it. Each case runs in a fresh interpreter
whose import system refuses the extra's modules, as if they were not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import supervisor

ROOT = Path(__file__).resolve().parent.parent

PYROGRAM = ("pyrogram", "tgcrypto", "trio_asyncio")
OPS = ("rich", "hypercorn", "prometheus_client", "structlog")
TESTING = ("hypothesis", "pytest", "pytest_trio")

# a meta-path finder ahead of the others: the blocked modules are "not installed"
BLOCKER = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    """
)


def run_blocked(
    blocked: tuple[str, ...], code: str, *, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``blocked`` cannot be imported."""
    program = f"BLOCKED = {set(blocked)!r}\n{BLOCKER}\n{textwrap.dedent(code)}"
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def expect_missing(result: subprocess.CompletedProcess[str], feature: str, extra: str) -> None:
    """The program printed the MissingExtra it caught, naming the feature and the extra."""
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MissingExtra: "), result.stdout
    assert feature in result.stdout
    assert f"pip install 'trio-supervision[{extra}]'" in result.stdout


CATCH = """
try:
    {use}
except ImportError as error:
    print(f"{{type(error).__name__}}: {{error}}")
else:
    print("no error")
"""


def test_core_runs_a_tree_without_any_extra() -> None:
    """With every extra's modules missing, the packages import and a tree runs."""
    result = run_blocked(
        PYROGRAM + OPS + TESTING,
        """
        import trio, specs, supervisor, supervisor.events, supervisor.testing, workers

        async def child(task_status=trio.TASK_STATUS_IGNORED):
            task_status.started("up")
            await trio.sleep_forever()

        async def main():
            spec = specs.SupervisorSpec(children=[specs.ChildSpec(id="a", start=child)])
            async with supervisor.open_supervisor(spec, hooks=[]) as sup:
                ids = [info.id for info in sup.which_children()]
                print(ids, workers.WebSocketSessionWorker.__name__)

        trio.run(main)
        print(sorted(set(sys.modules) & BLOCKED))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "['a'] WebSocketSessionWorker",
        "[]",
    ]


@pytest.mark.parametrize("missing", ["pyrogram", "trio_asyncio"])
@pytest.mark.parametrize("name", ["PyrogramClientWorker", "PyrogramConfig", "account_pool"])
def test_pyrogram_names_without_pyrogram_name_the_extra(missing: str, name: str) -> None:
    """workers' Pyrogram names, without Pyrogram or trio-asyncio, name [pyrogram]."""
    result = run_blocked((missing,), CATCH.format(use=f"from workers import {name}"))
    expect_missing(result, f"workers.{name}", "pyrogram")
    assert repr(missing) in result.stdout


@pytest.mark.parametrize("name", ["MTProtoServer", "open_mtproto_server", "session_string"])
def test_mtproto_test_server_without_pyrogram_names_the_extra(name: str) -> None:
    """workers.testing's MTProto names, without Pyrogram, name [pyrogram]."""
    result = run_blocked(("pyrogram",), CATCH.format(use=f"from workers.testing import {name}"))
    expect_missing(result, f"workers.testing.{name}", "pyrogram")


def test_missing_extra_is_an_import_error_with_the_module_name() -> None:
    """MissingExtra subclasses ImportError and carries the missing module and the extra."""
    result = run_blocked(
        ("pyrogram",),
        """
        import workers, supervisor
        try:
            workers.PyrogramClientWorker
        except supervisor.MissingExtra as error:
            print(isinstance(error, ImportError), error.name, error.extra, error.feature)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "pyrogram", "pyrogram", "workers.PyrogramClientWorker"]


def test_testing_toolkit_without_hypothesis_names_the_extra_for_strategies() -> None:
    """supervisor.testing imports without Hypothesis; only its strategies name [testing]."""
    result = run_blocked(
        ("hypothesis",),
        "import supervisor.testing as testing\n"
        "assert callable(testing.run_scenario) and callable(testing.simulate)\n"
        + CATCH.format(use="testing.scenarios"),
    )
    expect_missing(result, "supervisor.testing.scenarios", "testing")


@pytest.mark.parametrize(
    ("missing", "use", "feature"),
    [
        ("structlog", "supervisor.structlog_hook()", "supervisor.structlog_hook"),
        ("rich", "supervisor.render_text(None)", "supervisor.render_text"),
    ],
)
def test_ops_names_without_ops_name_the_extra(missing: str, use: str, feature: str) -> None:
    """The [ops] functions of supervisor, without their library, name [ops]."""
    result = run_blocked((missing,), "import supervisor\n" + CATCH.format(use=use))
    expect_missing(result, feature, "ops")


@pytest.mark.parametrize(
    ("missing", "option"),
    [
        ("rich", ["--tree"]),
        ("hypercorn", ["--http", "127.0.0.1:0"]),
        ("prometheus_client", ["--http", "127.0.0.1:0"]),
    ],
)
def test_cli_ops_options_without_ops_exit_78_with_one_line(missing: str, option: list[str]) -> None:
    """`run --tree`/`--http` without [ops] exits 78 with one line naming the extra."""
    argv = ["supervisor", "run", "tests.cli_targets:tree", *option]
    result = run_blocked(
        (missing,),
        f"""
        import runpy
        sys.argv = {argv!r}
        runpy.run_module("supervisor", run_name="__main__")
        """,
    )
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{option[0]} needs {missing!r}, which is not installed: "
        "pip install 'trio-supervision[ops]'"
    ]


def test_guard_lets_other_missing_modules_through() -> None:
    """A missing module that is not the extra's keeps its own ModuleNotFoundError."""
    with (
        pytest.raises(ModuleNotFoundError) as caught,
        supervisor.MissingExtra.guard("ops", "something"),
    ):
        import no_such_module_here  # type: ignore[import-not-found]  # noqa: F401
    assert type(caught.value) is ModuleNotFoundError
    assert caught.value.name == "no_such_module_here"


def test_supervisord_in_the_same_package_directory_is_refused(tmp_path: Path) -> None:
    """If supervisord's files share our `supervisor` directory, importing it says so."""
    for package in ("specs", "supervisor"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tmp_path / "supervisor" / "supervisord.py").write_text("# supervisord's daemon\n")
    result = run_blocked((), CATCH.format(use="import supervisor"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError: "), result.stdout
    assert "supervisord" in result.stdout
    assert "separate virtual environments" in result.stdout
