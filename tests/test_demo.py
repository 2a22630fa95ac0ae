"""The demo (README's first command) runs for a bounded time and recovers from every fault."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_recovers_from_every_injected_fault() -> None:
    """FloodWait, close frame, black hole, PoolTimeout and revoked account: all handled."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.telegram_bridge",
            "--seconds",
            "18",
            "--speed",
            "2",
            "--no-view",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    table = result.stdout.split("fault ", 1)[1].splitlines()[1:6]
    assert [line.split()[-1] for line in table] == ["ok"] * 5, result.stdout
    assert "stays down" in result.stdout
    # the tree before the shutdown shows carol's account down, with its reason
    assert "AuthRevoked" in result.stdout
    # and the shutdown happened in order: the relay's children, newest first
    stops = [line for line in result.stderr.splitlines() if "child_stopped" in line]
    offenders = [line.rsplit("offender=", 1)[1] for line in stops]
    assert offenders.index("bot") < offenders.index("exchange")
