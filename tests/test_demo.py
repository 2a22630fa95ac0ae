"""The demo (README's first command) recovers from every fault it injects.

The demo's servers, faults and tree all run in one trio process, so the test runs
it in-process on virtual time (``autojump_clock``): 18 or 36 seconds of faults take no
longer than the machine needs for the work, and the outcome does not depend on how
busy the machine is. A subprocess run checks only that the command is there.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from examples.telegram_bridge.__main__ import local

ROOT = Path(__file__).resolve().parent.parent


# at speed 1 the exchange pings while the server's 1011 close goes out (a race
# the loopback server must survive); at 2 the schedule is denser
@pytest.mark.parametrize(("speed", "seconds"), [(2.0, 18.0), (1.0, 36.0)])
async def test_demo_recovers_from_every_injected_fault(
    speed: float,
    seconds: float,
    autojump_clock: MockClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """FloodWait, close frame, black hole, PoolTimeout and revoked account: all handled."""
    monkeypatch.chdir(tmp_path)  # Pyrogram writes unknown_errors.txt to the cwd
    caplog.set_level(logging.INFO, logger="supervisor")
    args = argparse.Namespace(seconds=seconds, no_view=True, speed=speed, real=False)
    with trio.fail_after(seconds + 60):  # virtual seconds: a hang guard, not a measurement
        code = await local(args)
    out = capsys.readouterr().out
    assert code == 0, out
    table = out.split("fault ", 1)[1].splitlines()[1:6]
    assert [line.split()[-1] for line in table] == ["ok"] * 5, out
    assert "stays down" in out
    # the tree before the shutdown shows carol's account down, with its reason
    assert "AuthRevoked" in out
    # and the shutdown happened in order: the relay's children, newest first
    offenders = [
        record.offender  # type: ignore[attr-defined]
        for record in caplog.records
        if getattr(record, "error_context", None) == "child_stopped"
    ]
    assert offenders.index("bot") < offenders.index("exchange")


def test_demo_command_is_there() -> None:
    """``python -m examples.telegram_bridge --help`` runs and names its options."""
    result = subprocess.run(
        [sys.executable, "-m", "examples.telegram_bridge", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--seconds" in result.stdout
    assert "--speed" in result.stdout
