"""The examples run, end to end: in-process on virtual time, and as commands.

Each example's servers and tree live in one trio process, so the behaviour is
checked in-process on virtual time (``autojump_clock``): the seconds an example
waits cost nothing, and nothing depends on how busy the machine is. A subprocess
run of each checks only that the command starts, parses its options and exits.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

import supervisor
from examples import echo_worker, event_stream, three_children

ROOT = Path(__file__).resolve().parent.parent


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m examples.<name>`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )


async def test_echo_worker_recovers_from_a_dropped_connection(
    autojump_clock: MockClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The 20-line worker answers, loses its connection, is restarted and answers again."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):  # virtual seconds: a hang guard
        await echo_worker.main()
    out = capsys.readouterr().out
    assert "reply: b'hello'" in out
    assert "reply after the restart: b'again'" in out
    assert "ConnectionLost" in caplog.text


async def test_three_children_runs_and_stops_in_order(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The three-child tree runs, restarts what fails, and stops its first child last."""
    caplog.set_level(logging.INFO, logger="supervisor")
    with trio.move_on_after(3):
        async with supervisor.open_supervisor(three_children.build_tree(seed=3)):
            await trio.sleep_forever()
    reports = [r for r in caplog.records if hasattr(r, "error_context")]
    contexts = [r.error_context for r in reports]
    assert "child_terminated" in contexts
    assert "restart_scheduled" in contexts
    # echo, started first, is stopped last, after whatever else was still running
    assert contexts[-1] == "child_stopped"
    assert reports[-1].offender == "echo"  # type: ignore[attr-defined]


def test_three_children_command_runs_for_its_seconds() -> None:
    """``python -m examples.three_children --seconds 1`` runs, stops and prints its tree."""
    result = run_example("examples.three_children", "--seconds", "1", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert '"children"' in result.stdout  # the final snapshot, as JSON


async def test_event_stream_prints_each_typed_failure_as_it_happens(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The subscriber prints the demo's five faults, typed, where each happened, in order."""
    monkeypatch.chdir(tmp_path)  # Pyrogram writes unknown_errors.txt to the cwd
    out = io.StringIO()
    with trio.fail_after(60):  # virtual seconds: a hang guard
        code = await event_stream.main(seconds=18.0, speed=2.0, out=out)
    assert code == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    failures = [line.split()[1:3] for line in lines if " -> " in line]
    assert [(where, typed.split("(")[0]) for where, typed in failures] == [
        ("bridge/accounts/account-2/client", "FloodWait"),
        ("bridge/relay/exchange", "ConnectionLost"),
        ("bridge/relay/exchange", "HeartbeatTimeout"),
        ("bridge/relay/bot", "PoolExhausted"),
        ("bridge/accounts/account-3/client", "AuthRevoked"),
    ], lines
    assert "FloodWait(seconds=3) -> restart" in out.getvalue()
    assert "AuthRevoked(cause='AUTH_KEY_UNREGISTERED') -> keep" in out.getvalue()
    # bob's account waits the FloodWait's seconds, then is back
    bob = [line.split(None, 2) for line in lines if "account-2/client" in line]
    assert [words[2] for words in bob] == [
        "FloodWait(seconds=3) -> restart",
        "restart in 3.0s",
        "back (incarnation 2)",
    ]
    assert float(bob[2][0].rstrip("s")) - float(bob[0][0].rstrip("s")) == pytest.approx(3.0)


def test_event_stream_command_is_there() -> None:
    """``python -m examples.event_stream --help`` runs and names its options."""
    result = run_example("examples.event_stream", "--help")
    assert result.returncode == 0, result.stderr
    assert "--seconds" in result.stdout
