"""Shared test machinery: the trio runner every async test uses, and its checks.

Two things are added to every async test (not through fixtures: pytest-trio runs
only the async fixtures, clocks and instruments that are the test function's own
arguments):

- a check that no child runner, timer or supervisor task outlives the test body;
- through pytest-trio's ``run=`` hook, when the test asks for a ``MockClock``
  (``autojump_clock``), a hold on its autojump while a worker thread runs
  (``trio.to_thread``: TLS contexts, file writes, Pyrogram's crypto pool). A thread's
  work takes real time; to the run loop it looks like every task is blocked, and a
  plain autojump would skip virtual time past the deadlines waiting on it, by as much
  as the machine is slow. Held, the virtual clock moves only when nothing in the
  process can make progress, so a test's outcome does not depend on the machine's
  speed.

Sockets on 127.0.0.1 need no such hold as long as Nagle's algorithm is off on them
(trio turns it off; see ``workers/_aio_bridge.py`` for Pyrogram's): the kernel then
delivers loopback data within the sender's ``send``, so by the time every task is
blocked, whatever was sent is readable. With Nagle on, a small write waits for the
peer's delayed ACK, a kernel timer the virtual clock would jump past.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

_SUPERVISOR_TASKS = {"run_incarnation", "_timer", "run_supervisor"}


class _TaskTracker(trio.abc.Instrument):
    """Keeps the supervisor tasks spawned while it is installed that are still alive."""

    def __init__(self) -> None:
        self.live: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        code = getattr(task.coro, "cr_code", None)
        if code is not None and code.co_name in _SUPERVISOR_TASKS:
            self.live.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)


def _no_leaked_tasks(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """The test, then a check that no child runner, timer or supervisor task it started lives on."""

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> None:
        tracker = _TaskTracker()
        trio.lowlevel.add_instrument(tracker)
        try:
            await test(*args, **kwargs)
            await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(tracker)
        leaked = sorted(task.name for task in tracker.live)
        assert not leaked, f"tasks outlived their supervisor: {leaked}"

    return checked


class _ThreadsHoldTheClock(trio.abc.Instrument):
    """Suspends a MockClock's autojump while any ``trio.to_thread`` call is running.

    A thread starts and ends inside task steps (the caller's, then its resumption), so
    checking after each step is enough to switch the hold on and off in time.
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.clock = clock
        self.threshold = clock.autojump_threshold
        self.held = False

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        busy = trio.testing.active_thread_count() > 0
        if busy != self.held:
            self.held = busy
            self.clock.autojump_threshold = math.inf if busy else self.threshold


def _run(
    fn: Callable[[], Any],
    *,
    clock: trio.abc.Clock | None = None,
    instruments: list[trio.abc.Instrument] | None = None,
) -> Any:
    """``trio.run``, with the thread hold on a mock clock."""
    added = list(instruments or ())
    if isinstance(clock, trio.testing.MockClock):
        added.append(_ThreadsHoldTheClock(clock))
    return trio.run(fn, clock=clock, instruments=added)


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` (Pyrogram appends unknown RPC errors to ./unknown_errors.txt)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_configure(config: pytest.Config) -> None:
    """Register the project's pytest plugin (its ``pytest11`` entry point, once installed)."""
    from workers.testing import pytest_plugin

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "trio_supervision")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every trio test the leak check, and run it through ``_run``."""
    for item in items:
        function = getattr(item, "function", None)
        if function is None or not inspect.iscoroutinefunction(function):
            continue
        assert isinstance(item, pytest.Function)
        # Hypothesis wraps its own inner test; a running_tree outlives the body by design
        # (its fixture stops it afterwards)
        if not hasattr(item.obj, "hypothesis") and "running_tree" not in item.fixturenames:
            item.obj = _no_leaked_tasks(item.obj)
        if not any(m.kwargs.get("run") for m in item.iter_markers("trio")):
            item.add_marker(pytest.mark.trio(run=_run))
