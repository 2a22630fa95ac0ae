"""Tests for supervisor.run: a tree as a whole program, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import trio

import supervisor

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent(
    """
    import sys, trio, specs, supervisor

    async def worker(name, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            print("stopped", name, flush=True)

    async def ready_then_crash(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep(0)
        raise RuntimeError("boom")

    async def slow_cleanup(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            print("cleaning up", flush=True)
            with trio.CancelScope(shield=True):
                await trio.sleep(3600)

    async def announce(task_status=trio.TASK_STATUS_IGNORED):
        print("ready", flush=True)
        task_status.started()
        await trio.sleep_forever()

    async def hostage(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:  # and never lets go
            with trio.CancelScope(shield=True):
                await trio.sleep_forever()

    mode = sys.argv[1]
    children = [specs.ChildSpec(id=n, start=worker, args=(n,)) for n in ("a", "b")]
    if mode == "crash":
        children.append(specs.ChildSpec(id="c", start=ready_then_crash))
    if mode == "slow":
        children.append(specs.ChildSpec(id="s", start=slow_cleanup, shutdown=specs.INFINITY))
    if mode == "hostage":
        children.append(specs.ChildSpec(id="hostage", start=hostage, shutdown=0.2))
    children.append(specs.ChildSpec(id="announce", start=announce))
    intensity = 1
    if mode == "bad":
        intensity = -1
        # tampered after construction: only validate() at run time can catch it
        spec = specs.SupervisorSpec(children=children, period=5.0)
        object.__setattr__(spec, "intensity", -1)
    else:
        spec = specs.SupervisorSpec(children=children, intensity=intensity, period=60)
    if mode == "hostage":  # logged, within a shutdown that cannot finish
        supervisor.run(spec, grace=4)
    supervisor.run(spec, hooks=[])
    """
)


async def run_program(
    mode: str, *, send: signal.Signals | None = None, again: signal.Signals | None = None
) -> tuple[int, str, str]:
    """Run the program; signal it once it is ready (and ``again`` once it cleans up).

    Returns:
        (exit code, stdout, stderr).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            lambda task_status: trio.run_process(  # noqa: ASYNC105 - awaited by nursery.start
                [sys.executable, "-c", PROGRAM, mode],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                check=False,
                task_status=task_status,
            )
        )
        output = b""
        assert process.stdout is not None
        assert process.stderr is not None
        with trio.fail_after(60):
            for signum, marker in ((send, b"ready"), (again, b"cleaning up")):
                if signum is None:
                    continue
                while marker not in output:
                    chunk = await process.stdout.receive_some()
                    assert chunk, f"the program ended before {marker!r}"
                    output += chunk
                process.send_signal(signum)
            async for chunk in process.stdout:
                output += chunk
            errors = b""
            async for chunk in process.stderr:
                errors += chunk
            code = await process.wait()
    return code, output.decode(), errors.decode()


async def test_sigterm_stops_the_tree_in_order_and_exits_zero() -> None:
    """SIGTERM makes run() stop children newest first and exit with EXIT_OK."""
    code, out, _ = await run_program("clean", send=signal.SIGTERM)
    assert code == supervisor.EXIT_OK
    assert out.splitlines()[1:] == ["stopped b", "stopped a"]


async def test_sigint_is_an_ordered_shutdown_too() -> None:
    """SIGINT (Ctrl-C) is handled like SIGTERM, not as a KeyboardInterrupt traceback."""
    code, out, err = await run_program("clean", send=signal.SIGINT)
    assert code == supervisor.EXIT_OK
    assert "Traceback" not in err
    assert out.splitlines()[1:] == ["stopped b", "stopped a"]


async def test_root_giving_up_exits_with_gave_up_code() -> None:
    """When the root reaches its intensity, run() exits with EXIT_GAVE_UP and says why."""
    code, _, err = await run_program("crash")
    assert code == supervisor.EXIT_GAVE_UP
    assert "maximum restart intensity" in err


async def test_invalid_spec_exits_with_bad_spec_code() -> None:
    """An invalid spec makes run() exit with EXIT_BAD_SPEC, a message and no traceback."""
    code, _, err = await run_program("bad")
    assert code == supervisor.EXIT_BAD_SPEC
    assert "intensity" in err
    assert "Traceback" not in err


async def test_second_sigint_exits_at_once_during_a_long_cleanup() -> None:
    """A second Ctrl-C ends the process at once (130), not after the hour-long cleanup."""
    code, out, err = await run_program("slow", send=signal.SIGINT, again=signal.SIGINT)
    assert code == 128 + signal.SIGINT
    assert "cleaning up" in out
    assert err.strip() == "second SIGINT: exiting without waiting for the cleanup"


async def test_second_sigterm_exits_at_once_during_a_long_cleanup() -> None:
    """A second SIGTERM ends the process at once (143), with one line saying so."""
    code, _, err = await run_program("slow", send=signal.SIGTERM, again=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert err.strip() == "second SIGTERM: exiting without waiting for the cleanup"


async def test_hostage_child_is_named_and_the_process_exits_at_grace() -> None:
    """A child that ignores its stop is logged once by name; run() exits 75 at --grace."""
    code, out, err = await run_program("hostage", send=signal.SIGTERM)
    assert code == supervisor.EXIT_SHUTDOWN_TIMEOUT
    assert out.splitlines()[1:] == ["stopped b", "stopped a"]  # the others still stop
    unresponsive = [line for line in err.splitlines() if "unresponsive" in line]
    assert len(unresponsive) == 1
    assert "offender=hostage" in unresponsive[0]
