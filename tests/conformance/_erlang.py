"""Run supervision scenarios on a real OTP ``supervisor`` through ``otp_harness.escript``.

The scenario and trace formats are described in ``README.md`` next to this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["HARNESS", "escript_path", "run_on_otp"]

HARNESS = Path(__file__).with_name("otp_harness.escript")
"""Path of the escript that drives the OTP supervisor."""


def escript_path() -> str | None:
    """Return the path of the ``escript`` executable.

    Returns:
        The absolute path of ``escript`` on ``PATH``, or ``None`` if Erlang is not installed.
    """
    return shutil.which("escript")


def run_on_otp(
    scenarios: list[dict[str, Any]], *, timeout: float = 600
) -> list[list[list[object]]]:
    """Run scenarios concurrently on a real OTP supervisor and return their traces.

    All scenarios run at the same time in one ``escript`` process, each with its own
    supervisor, so a batch takes about as long as its longest scenario (plus about 1.5 s).

    Args:
        scenarios: Scenario objects in the format described in ``README.md``.
        timeout: Seconds to wait for the escript before giving up.

    Returns:
        One trace per scenario, in scenario order. A trace is a list of events, each a
        list such as ``["start", "c1"]`` or ``["api", "restart_child", "c1", "ok"]``.

    Raises:
        RuntimeError: If ``escript`` is missing, the harness fails or times out, rejects a
            scenario, or reports an error for one of them. The message includes the
            escript's stderr and the per-scenario errors.
    """
    if not scenarios:
        return []
    escript = escript_path()
    if escript is None:
        raise RuntimeError("escript not found on PATH; install Erlang/OTP (erlang-base)")
    fd, name = tempfile.mkstemp(prefix="otp-scenarios-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(scenarios, f)
        try:
            proc = subprocess.run(
                [escript, str(HARNESS), name],
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"otp_harness.escript timed out after {timeout} s") from exc
    finally:
        os.unlink(name)

    traces: dict[int, list[list[object]]] = {}
    errors: list[str] = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            errors.append(f"unparsable output line: {line!r}")
            continue
        index = record["index"]
        if "error" in record:
            errors.append(f"scenario {index}: {record['error']}")
        else:
            traces[index] = record["trace"]
    missing = [i for i in range(len(scenarios)) if i not in traces]
    if proc.returncode != 0 or errors or missing:
        details = "\n".join(errors)
        raise RuntimeError(
            f"otp_harness.escript failed (exit status {proc.returncode}); "
            f"scenarios without a trace: {missing[:20]}{'...' if len(missing) > 20 else ''}\n"
            f"{details}\nstderr:\n{proc.stderr}"
        )
    return [traces[i] for i in range(len(scenarios))]
