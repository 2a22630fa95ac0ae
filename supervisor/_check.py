"""Checking a user's real tree: the runtime's trace against the model's, and invariants."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import attrs
import trio
import trio.testing

from specs import DynamicSupervisorSpec, SupervisorSpec

from ._harness import TreeRunner, run_tree
from ._model import simulate_tree
from ._scenario import FaultSchedule, Step
from ._snapshot import SupervisorSnapshot

#: Lines of agreement shown before the first divergence.
CONTEXT = 6


class TraceMismatch(AssertionError):
    """The runtime did something else than the reference model predicts.

    Its message shows the schedule, the steps both agree on just before, and
    the first step where they part.
    """


@attrs.frozen
class TreeRun:
    """What one run of a schedule did, for your invariants.

    Attributes:
        spec: The tree (as you wrote it; its leaves ran as puppets).
        schedule: The faults.
        trace: Every step, in order (API results at the end, in call order).
        snapshots: The root's snapshot after each fault, with its time.
    """

    spec: SupervisorSpec | DynamicSupervisorSpec
    schedule: FaultSchedule
    trace: tuple[Step, ...]
    snapshots: tuple[tuple[float, SupervisorSnapshot], ...] = ()

    def steps(
        self, event: str | None = None, *, supervisor: str | None = None, child: str | None = None
    ) -> list[Step]:
        """The steps of one kind, of one supervisor, of one child (``None``: any)."""
        return [
            s
            for s in self.trace
            if (event is None or s.event == event)
            and (supervisor is None or s.supervisor == supervisor)
            and (child is None or s.child == child)
        ]

    def restarts(self, path: str) -> list[Step]:
        """The automatic restarts of the child at ``path`` (``supervisor/child``)."""
        supervisor, _, child = path.rpartition("/")
        return self.steps("restart", supervisor=supervisor, child=child)


def first_divergence(expected: list[Step], actual: list[Step]) -> int | None:
    """The index of the first step where two traces differ, or ``None`` if they are equal."""
    for index, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return index
    return None if len(expected) == len(actual) else min(len(expected), len(actual))


def trace_diff(expected: list[Step], actual: list[Step], *, schedule: FaultSchedule) -> str:
    """A readable report of the first divergence between the model and the runtime."""
    index = first_divergence(expected, actual)
    if index is None:
        return "the traces agree"
    lines = ["schedule:", *(f"  {line}" for line in str(schedule).splitlines())]
    lines.append(f"the traces part at step {index}:")
    lines += [f"    {step}" for step in expected[max(0, index - CONTEXT) : index]]

    def at(trace: list[Step]) -> str:
        return str(trace[index]) if index < len(trace) else "(the trace ends)"

    lines.append(f"  - model:   {at(expected)}")
    lines.append(f"  + runtime: {at(actual)}")
    return "\n".join(lines)


def run_on_mock_clock(
    spec: SupervisorSpec | DynamicSupervisorSpec, schedule: FaultSchedule
) -> TreeRun:
    """Run a schedule on the runtime, in a ``trio.run`` of its own on an autojump ``MockClock``."""
    runner = TreeRunner(spec, schedule)
    clock = trio.testing.MockClock(autojump_threshold=0)
    trace = trio.run(functools.partial(run_tree, spec, schedule, runner=runner), clock=clock)
    return TreeRun(spec, schedule, tuple(trace), tuple(runner.snapshots))


def check_tree(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    schedule: FaultSchedule,
    *,
    invariants: Iterable[Callable[[TreeRun], object]] | Callable[[TreeRun], object] = (),
) -> TreeRun:
    """Run a schedule on the runtime and on the model; they must agree, and so must you.

    Call it from a sync test (it runs trio itself), typically with
    ``@given(fault_schedules(spec))``.

    Args:
        spec: Your tree, as you run it: its leaves run as puppets.
        schedule: The faults (from :func:`fault_schedules`, or written by hand).
        invariants: Callables over the :class:`TreeRun` that raise (``assert``)
            when your expectation does not hold; run after the traces agree.

    Returns:
        The run, for more assertions.

    Raises:
        TraceMismatch: the runtime's trace differs from the model's.
        Unmodelled: the schedule's outcome depends on simultaneous events.
    """
    expected = simulate_tree(spec, schedule)
    run = run_on_mock_clock(spec, schedule)
    actual = list(run.trace)
    if actual != expected:
        raise TraceMismatch(trace_diff(expected, actual, schedule=schedule))
    for invariant in [invariants] if callable(invariants) else invariants:
        invariant(run)
    return run
