"""The examples run, end to end, in subprocesses (they use the real clock and loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_echo_worker_recovers_from_a_dropped_connection() -> None:
    """The 20-line worker answers, loses its connection, is restarted and answers again."""
    result = run_example("examples.echo_worker")
    assert result.returncode == 0, result.stderr
    assert "reply: b'hello'" in result.stdout
    assert "reply after the restart: b'again'" in result.stdout
    assert "ConnectionLost" in result.stderr


def test_three_children_runs_and_stops_in_order() -> None:
    """The three-child tree runs, restarts what fails, and stops its first child last."""
    result = run_example("examples.three_children", "--seconds", "3", "--seed", "3")
    assert result.returncode == 0, result.stderr
    reports = [line for line in result.stderr.splitlines() if "errorContext=" in line]
    assert any("child_terminated" in line for line in reports)
    assert any("restart_scheduled" in line for line in reports)
    # echo, started first, is stopped last, after whatever else was still running
    assert "child_stopped" in reports[-1]
    assert reports[-1].endswith("offender=echo")
