"""A Hypothesis state machine over a user's real tree: faults, API calls and time, interleaved.

Hypothesis' stateful rules are sync; the tree runs in ``trio.run`` in a
thread of its own on a manual ``MockClock``. Each rule moves virtual time on
(to the next fault's instant), applies the fault to the runtime (through
``trio.from_thread``) and to the reference model (lock-step, incrementally),
and the invariant compares their traces so far.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
import unittest
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import attrs
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from specs import DynamicSupervisorSpec, SupervisorSpec

from ._check import TraceMismatch, TreeRun, trace_diff
from ._harness import TreeRunner
from ._model import Unmodelled, _Sim
from ._scenario import Fault, FaultSchedule, Step
from ._strategies import _EXIT_REASONS, _NEW_IDS, _RESTARTS, _STEPS, _map_tree, _TreeMap


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


#: Settings for :meth:`TreeMachine.for_spec` (override with ``settings=``).
DEFAULT_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


async def _advance_to(clock: trio.testing.MockClock, until: float) -> None:
    """Move a manual MockClock to ``until``, deadline by deadline, settling at each."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        now = trio.current_time()
        wait = trio.lowlevel.current_statistics().seconds_to_next_deadline
        if now + wait > until:
            break
        clock.jump(wait)
    if until > now:
        clock.jump(until - now)
    await trio.testing.wait_all_tasks_blocked()


class TreeMachine(RuleBasedStateMachine):
    """Interleavings of faults, API calls and time on a tree, runtime and model in lock-step.

    Use :meth:`for_spec`: ``TestMyTree = TreeMachine.for_spec(tree)`` is a
    ``unittest.TestCase`` pytest collects.
    """

    spec: ClassVar[SupervisorSpec | DynamicSupervisorSpec]
    tree: ClassVar[_TreeMap]
    user_invariants: ClassVar[tuple[Callable[[TreeRun], object], ...]] = ()

    @classmethod
    def for_spec(
        cls,
        spec: SupervisorSpec | DynamicSupervisorSpec,
        *,
        invariants: Iterable[Callable[[TreeRun], object]] = (),
        settings: settings | None = None,
    ) -> type[unittest.TestCase]:
        """A TestCase that runs this machine over ``spec``.

        Args:
            spec: Your tree, as you run it (its leaves run as puppets).
            invariants: Checked after every step, over the run so far.
            settings: Hypothesis settings (default: :data:`DEFAULT_SETTINGS`).
        """
        tree = _TreeMap()
        _map_tree(spec, spec.name or "supervisor", tree, bounded=False)
        machine = type(
            f"TreeMachine_{spec.name or 'supervisor'}",
            (cls,),
            {"spec": spec, "tree": tree, "user_invariants": tuple(invariants)},
        )
        case: type[unittest.TestCase] = getattr(machine, "TestCase")  # noqa: B009 (made by Hypothesis)
        case.settings = settings or DEFAULT_SETTINGS  # type: ignore[attr-defined]
        return case

    def __init__(self) -> None:
        super().__init__()
        self.schedule = FaultSchedule(seed=0)
        self.now = 0.0
        self.calls = 0
        self.faults: list[Fault] = []
        self.unmodelled = False
        self.model = _Sim(self.spec, self.schedule, random.Random(0))
        self.model.start()
        self.runner = TreeRunner(self.spec, self.schedule)
        self.clock = trio.testing.MockClock()
        self._ready = threading.Event()
        self._result: list[Step] | BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._done: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait()

    # ------------------------------------------------------ the runtime's thread

    def _run(self) -> None:
        async def body(run: TreeRunner, calls: trio.Nursery) -> None:
            self._nursery, self._done = calls, trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._done.wait()

        async def main() -> list[Step]:
            return await self.runner.run(body)

        try:
            self._result = trio.run(main, clock=self.clock)
        except BaseException as error:  # reported by teardown
            self._result = error
        finally:
            self._ready.set()

    def _in_trio(self, fn: Callable[..., Any], *args: Any) -> Any:
        call = trio.from_thread.run if _is_async(fn) else trio.from_thread.run_sync
        try:
            return call(functools.partial(fn, *args), trio_token=self._token)
        except (trio.Cancelled, trio.RunFinishedError):
            return None  # the root ended (it gave up, or shut itself down): the run is over

    async def _apply(self, fault: Fault | None, until: float) -> None:
        await _advance_to(self.clock, until)
        if fault is not None and not self.runner.finished:
            assert self._nursery is not None
            self.runner.act(fault, self._nursery)
            await trio.testing.wait_all_tasks_blocked()

    def _shut_down(self) -> None:
        self.clock.autojump_threshold = 0  # the shutdown's cleanups take virtual time
        assert self._done is not None
        self._done.set()

    @property
    def _schedule(self) -> FaultSchedule:
        return attrs.evolve(self.schedule, faults=tuple(self.faults), end=self.now)

    # ------------------------------------------------------------------ rules

    def _step(self, dt: float, fault: Fault | None) -> None:
        self.now += dt
        if fault is not None:
            fault = attrs.evolve(fault, at=self.now)
            self.faults.append(fault)
            if fault.op in ("exit", "fail_starts"):
                self.model.add(-1, fault)
            else:  # API results are matched by the order of the calls
                self.model.add(self.calls, fault)
                self.calls += 1
        try:
            self.model.advance(self.now)
        except Unmodelled:
            self.unmodelled = True
            assume(False)
        if self._result is None:
            self._in_trio(self._apply, fault, self.now)

    @rule(dt=st.sampled_from(_STEPS), data=st.data())
    def exit(self, dt: float, data: st.DataObject) -> None:
        """A leaf exits by itself."""
        leaf = data.draw(st.sampled_from(self.tree.leaves))
        reason = data.draw(st.sampled_from(_EXIT_REASONS))
        self._step(dt, Fault(at=0, op="exit", target=leaf.path, reason=reason))  # type: ignore[arg-type]

    @precondition(lambda self: any(leaf.handshake for leaf in self.tree.leaves))
    @rule(dt=st.sampled_from(_STEPS), count=st.integers(1, 3), data=st.data())
    def fail_starts(self, dt: float, count: int, data: st.DataObject) -> None:
        """A leaf's next starts fail."""
        leaf = data.draw(st.sampled_from([leaf for leaf in self.tree.leaves if leaf.handshake]))
        self._step(dt, Fault(at=0, op="fail_starts", target=leaf.path, count=count))

    @rule(dt=st.sampled_from(_STEPS), data=st.data())
    def call(self, dt: float, data: st.DataObject) -> None:
        """An API call on one of the tree's supervisors."""
        sup = data.draw(st.sampled_from(sorted([*self.tree.static, *self.tree.dynamic])))
        if sup in self.tree.dynamic:
            op = data.draw(st.sampled_from(("start_child", "terminate_child")))
            child = f"{self.tree.dynamic[sup]}-{data.draw(st.integers(1, 3))}"
            fault = Fault(at=0, op=op, target=sup, child=child)  # type: ignore[arg-type]
        else:
            ops = ("start_child", "terminate_child", "restart_child", "delete_child")
            fault = Fault(
                at=0,
                op=data.draw(st.sampled_from(ops)),
                target=sup,
                child=data.draw(st.sampled_from([*self.tree.static[sup], *_NEW_IDS])),
                restart=data.draw(st.sampled_from(_RESTARTS)),
            )
        self._step(dt, fault)

    @rule(dt=st.sampled_from((0.5, 2.0, 10.0)))
    def wait(self, dt: float) -> None:
        """Time passes (pending restarts happen)."""
        self._step(dt, None)

    @invariant()
    def runtime_follows_the_model(self) -> None:
        """The runtime's trace so far is the model's."""
        expected = self.model.so_far()
        actual = self.runner.trace + [s for _, s in sorted(self.runner.answers.items())]
        if actual != expected:
            raise TraceMismatch(trace_diff(expected, actual, schedule=self._schedule))
        run = TreeRun(self.spec, self._schedule, tuple(actual), tuple(self.runner.snapshots))
        for check in self.user_invariants:
            check(run)

    def teardown(self) -> None:
        """Shut the tree down on both sides; their whole traces must agree."""
        if self._result is None:
            self._in_trio(self._shut_down)
        self._thread.join()
        if isinstance(self._result, BaseException):
            raise self._result
        if self.unmodelled:
            return
        try:
            expected = self.model.finish(self.now)
        except Unmodelled:
            return
        assert self._result is not None
        if self._result != expected:
            raise TraceMismatch(trace_diff(expected, self._result, schedule=self._schedule))
