"""Shared fixtures: every test runs on trio with a check for leaked supervisor tasks."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

_SUPERVISOR_TASKS = {"run_incarnation", "_timer", "run_supervisor"}


class _TaskTracker(trio.abc.Instrument):
    def __init__(self) -> None:
        self.live: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.coro.cr_code.co_name in _SUPERVISOR_TASKS:
            self.live.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """After each test, no child runner, timer or supervisor task is left running."""
    tracker = _TaskTracker()
    trio.lowlevel.add_instrument(tracker)
    yield
    await trio.testing.wait_all_tasks_blocked()
    trio.lowlevel.remove_instrument(tracker)
    leaked = sorted(task.name for task in tracker.live)
    assert not leaked, f"tasks outlived their supervisor: {leaked}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every trio test the leak check."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.append("no_leaked_tasks")  # type: ignore[attr-defined]
