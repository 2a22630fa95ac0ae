"""Scripted workers, and running a :class:`Scenario` on the real runtime."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.lowlevel
import trio.testing

from specs import (
    ChildSpec,
    DynamicSupervisorSpec,
    Restart,
    Strategy,
    SupervisorSpec,
)
from specs._spec import accepts_task_status

from . import _operations
from ._api import DynamicSupervisorHandle, SupervisorHandle, open_supervisor
from ._child import current_child, shutdown_grace
from ._events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildTerminated,
    Event,
    GaveUp,
    RestartScheduled,
    ShutdownTimedOut,
    StartFailed,
)
from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    FailedToStartChild,
    MaxChildrenReached,
    MaxIntensityReached,
    Shutdown,
    SupervisorNotRunning,
)
from ._scenario import Action, Fault, FaultSchedule, Scenario, Step, TraceLine
from ._snapshot import SupervisorSnapshot


class ScriptedStartError(Exception):
    """The error a scripted worker fails its start with."""


class ScriptedCrash(Exception):
    """The error a scripted worker crashes with."""


@attrs.define(eq=False)
class Puppets:
    """Remote-controlled workers: start them under a tree, make them exit on cue.

    ``puppets.worker`` is an async callable for a ``ChildSpec``'s ``start``;
    its first argument is the name it answers to. ``await
    puppets.exit(name, "abnormal")`` makes the running incarnation exit with
    that reason; ``puppets.fail_next(name, n)`` fails its next ``n`` starts.

    ``puppets.plain_worker`` is the same worker without ``task_status``
    (started as soon as its code runs).

    Attributes:
        cleanup: Seconds each worker spends cleaning up when stopped (inside
            :func:`~supervisor.shutdown_grace`), to test shutdown grace.
        on_begin: Called with a worker's name as its code begins, before
            its first checkpoint: the order children's code really starts in.
    """

    cleanup: float = 0.0
    on_begin: Callable[[str], None] | None = None
    running: dict[str, trio.MemorySendChannel[str]] = attrs.Factory(dict)
    failures_left: dict[str, int] = attrs.Factory(dict)
    starts: dict[str, int] = attrs.Factory(dict)

    def fail_next(self, name: str, count: int = 1) -> None:
        """Make the next ``count`` starts of ``name`` fail."""
        self.failures_left[name] = count

    def is_running(self, name: str) -> bool:
        """Whether an incarnation of ``name`` is running."""
        return name in self.running

    def exit(self, name: str, reason: str = "abnormal") -> bool:
        """Make ``name`` exit: ``abnormal``, ``normal``, ``shutdown`` or ``shutdown_r``.

        Returns:
            Whether an incarnation was running to receive it.
        """
        channel = self.running.pop(name, None)
        if channel is None:
            return False
        channel.send_nowait(reason)
        return True

    async def worker(
        self, name: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The scripted worker: ready at once, then waits for its cue."""
        if self.on_begin is not None:
            self.on_begin(name)
        if self.failures_left.get(name, 0) > 0:
            self.failures_left[name] -= 1
            msg = f"scripted start failure of {name!r}"
            raise ScriptedStartError(msg)
        send, receive = trio.open_memory_channel[str](1)
        self.running[name] = send
        self.starts[name] = self.starts.get(name, 0) + 1
        task_status.started()
        try:
            reason = await receive.receive()
        finally:
            if self.running.get(name) is send:
                del self.running[name]
            if self.cleanup:
                with shutdown_grace():
                    await trio.sleep(self.cleanup)
        if reason == "abnormal":
            raise ScriptedCrash(name)
        if reason == "shutdown":
            raise Shutdown
        if reason == "shutdown_r":
            raise Shutdown("r")

    async def plain_worker(self, name: str) -> None:
        """The scripted worker as a plain child: no ``task_status``, no start failure of its own.

        A ``fail_next`` makes it crash right after its start (a plain child
        cannot fail to start).
        """
        await self.worker(name)


def _trace_line(event: Event, names: dict[str, str]) -> TraceLine | None:
    name = names.get(event.child, event.child)
    match event:
        case ChildStarted() | ChildRestarted():
            return ["start", name]
        case StartFailed():
            return ["start_failed", name]
        case ChildTerminated():
            return ["stop", name]
        case GaveUp():
            return ["gave_up", name]
    return None


_API_RESULTS: tuple[tuple[type[Exception], str], ...] = (
    (ChildNotFound, "not_found"),
    (ChildRunning, "running"),
    (ChildRestarting, "restarting"),
    (ChildAlreadyStarted, "already_started"),
    (ChildAlreadyPresent, "already_present"),
    (FailedToStartChild, "error"),
)


def scenario_spec(
    scenario: Scenario, puppets: Puppets, *, plain: bool = False
) -> SupervisorSpec | DynamicSupervisorSpec:
    """The supervisor spec a scenario describes, with ``puppets`` as its workers.

    Args:
        plain: Use ``puppets.plain_worker`` (children without ``task_status``).
    """
    worker = puppets.plain_worker if plain else puppets.worker
    children = tuple(
        ChildSpec(id=c.id, start=worker, args=(c.id,), restart=Restart(c.restart))
        for c in scenario.children
    )
    if scenario.dynamic:
        template = attrs.evolve(children[0], args=())
        return DynamicSupervisorSpec(
            template=template, intensity=scenario.intensity, period=scenario.period
        )
    return SupervisorSpec(
        children=children,
        strategy=Strategy(scenario.strategy),
        intensity=scenario.intensity,
        period=scenario.period,
    )


async def run_scenario(scenario: Scenario, *, plain: bool = False) -> list[TraceLine]:
    """Run a scenario on the runtime and return its trace (use a ``MockClock``).

    Actions happen at their times after the supervisor has started; the
    runtime settles (autojump) between them.

    Args:
        plain: Run the children without ``task_status``; their ``start``
            lines are then written by the children's own code as it begins,
            not by the supervisor's events, so the trace shows the order
            their code really started in. A plain child cannot fail to start:
            leave ``fail_starts`` and ``init_fail`` out of such a scenario.
    """
    puppets = Puppets()
    puppets.failures_left.update(dict(scenario.init_fail))
    trace: list[TraceLine] = []
    names: dict[str, str] = {}  # dynamic child id -> the scenario's name for it

    handles: list[SupervisorHandle | DynamicSupervisorHandle] = []

    if plain:
        puppets.on_begin = lambda name: trace.append(["start", name])

    def hook(event: Event) -> None:
        if scenario.dynamic and event.child not in names:
            # a dynamic child is named by the argument the scenario started it with
            names[event.child] = handles[0]._core.children[event.child].args[-1]
        if plain and isinstance(event, ChildStarted | ChildRestarted):
            return  # the child's own code wrote its start line
        line = _trace_line(event, names)
        if line is not None:
            trace.append(line)

    try:
        spec = scenario_spec(scenario, puppets, plain=plain)
        async with open_supervisor(spec, hooks=[hook]) as handle:
            handles.append(handle)
            start = trio.current_time()
            for action in scenario.actions:
                await trio.sleep_until(start + action.at)
                await _act(action, handle, puppets, names, trace, plain=plain)
                # the supervisor carries out everything the action caused
                # before the next action, even one due at the same instant
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_until(start + _settle_time(scenario))
    except MaxIntensityReached:
        trace.append(["sup_exit", "gave_up"])
        return trace
    except FailedToStartChild:
        trace.append(["sup_exit", "failed_to_start"])
        return trace
    trace.append(["sup_exit", "stopped"])
    return trace


def _settle_time(scenario: Scenario) -> float:
    return (scenario.actions[-1].at if scenario.actions else 0.0) + 1.0


async def _act(
    action: Action,
    handle: SupervisorHandle | DynamicSupervisorHandle,
    puppets: Puppets,
    names: dict[str, str],
    trace: list[TraceLine],
    *,
    plain: bool,
) -> None:
    if action.op == "crash":
        if not puppets.exit(action.child, action.reason):
            trace.append(["skip", "crash", action.child])
        return
    if action.op == "fail_starts":
        puppets.fail_next(action.child, action.count)
        return
    ids = {name: child_id for child_id, name in names.items()}
    child_id = ids.get(action.child, action.child)
    result = "ok"
    try:
        if isinstance(handle, DynamicSupervisorHandle):
            if action.op == "start_child":
                await handle.start_child(action.child)
            elif action.op == "terminate_child":
                await handle.terminate_child(child_id)
            else:
                result = "simple_one_for_one"  # OTP's answer: dynamic supervisors have no such call
        elif action.op == "start_child":
            spec = ChildSpec(
                id=action.child,
                start=puppets.plain_worker if plain else puppets.worker,
                args=(action.child,),
                restart=Restart(action.restart),
            )
            await handle.start_child(spec)
        elif action.op == "terminate_child":
            await handle.terminate_child(child_id)
        elif action.op == "restart_child":
            await handle.restart_child(child_id)
        else:
            await handle.delete_child(child_id)
    except Exception as error:
        known = next((text for kind, text in _API_RESULTS if isinstance(error, kind)), None)
        if known is None:
            raise
        result = known
    trace.append(["api", action.op, action.child, result])


# ============================================================ a user's own tree


@attrs.define(eq=False)
class TreePuppets:
    """The workers that stand in for a real tree's leaves, each known by its path.

    A puppet learns its path (``<supervisor name>/<child id>``) from
    :func:`~supervisor.current_child`, so it needs no arguments and ignores
    any. It is ready at once (or at its first checkpoint, for a leaf without
    ``task_status``), then waits for its cue; when its supervisor stops it, it
    cleans up for ``cleanup[path]`` seconds inside ``shutdown_grace``.
    """

    cleanup: dict[str, float] = attrs.Factory(dict)
    failures_left: dict[str, int] = attrs.Factory(dict)
    running: dict[str, trio.MemorySendChannel[Fault]] = attrs.Factory(dict)

    def exit(self, fault: Fault) -> bool:
        """Make the leaf ``fault.target`` exit as ``fault`` says; whether one was running."""
        channel = self.running.pop(fault.target, None)
        if channel is None:
            return False
        channel.send_nowait(fault)
        return True

    async def worker(
        self, *args: object, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """A puppet for a leaf that signals ready with ``task_status``."""
        await self._run(task_status)

    async def plain_worker(self, *args: object) -> None:
        """A puppet for a leaf without ``task_status``."""
        await self._run(None)

    async def _run(self, task_status: trio.TaskStatus[None] | None) -> None:
        me = current_child()
        name = f"{me.supervisor}/{me.id}"
        if task_status is not None and self.failures_left.get(name, 0) > 0:
            self.failures_left[name] -= 1
            msg = f"scripted start failure of {name!r}"
            raise ScriptedStartError(msg)
        send, receive = trio.open_memory_channel[Fault](1)
        self.running[name] = send
        if task_status is not None:
            task_status.started()
        try:
            fault = await receive.receive()
        except trio.Cancelled:
            if self.running.get(name) is send:
                del self.running[name]
            cleanup = self.cleanup.get(name, 0.0)
            if cleanup:
                with shutdown_grace():
                    await trio.sleep(cleanup)
            raise
        error: Exception | None = None
        if fault.reason == "abnormal":
            error = ScriptedCrash(name)
            if fault.delay is not None:
                error.supervisor_restart_delay = fault.delay  # type: ignore[attr-defined]
        elif fault.reason != "normal":
            error = Shutdown(None if fault.reason == "shutdown" else "r")
        if error is not None and fault.kind is not None:
            error.supervisor_failure_kind = fault.kind  # type: ignore[attr-defined]
        if error is not None:
            raise error


def puppet_tree(
    spec: SupervisorSpec | DynamicSupervisorSpec, puppets: TreePuppets
) -> SupervisorSpec | DynamicSupervisorSpec:
    """``spec`` with every leaf's ``start`` swapped for a puppet.

    Each leaf keeps its id, restart type, shutdown, kind and significance, and
    whether it takes ``task_status``; subtrees are walked, not swapped. The
    classifiers go: a puppet's failure declares its kind itself (``Fault.kind``).
    """

    def swap(child: ChildSpec) -> ChildSpec:
        start = child.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            return attrs.evolve(child, start=puppet_tree(start, puppets), classifier=None)
        worker = puppets.worker if accepts_task_status(start) else puppets.plain_worker
        return attrs.evolve(child, start=worker, args=(), classifier=None)

    if isinstance(spec, DynamicSupervisorSpec):
        return attrs.evolve(spec, template=swap(spec.template), classifier=None)
    return attrs.evolve(spec, children=tuple(swap(c) for c in spec.children), classifier=None)


_TREE_RESULTS: tuple[tuple[type[Exception], str], ...] = (
    *_API_RESULTS,
    (MaxChildrenReached, "max_children"),
    (SupervisorNotRunning, "not_running"),
)


def _tree_step(event: Event) -> Step | None:
    sup, child, now = event.supervisor, event.child, event.time
    match event:
        case ChildStarted():
            return Step(now, sup, "start", child)
        case ChildRestarted():
            return Step(now, sup, "restart", child)
        case StartFailed():
            return Step(now, sup, "start_failed", child)
        case ChildExited(reason=reason, action=action):
            return Step(now, sup, "exit", child, f"{reason.kind.value}:{action.value}")
        case ChildTerminated():
            return Step(now, sup, "stop", child)
        case ShutdownTimedOut():
            return Step(now, sup, "timed_out", child)
        case RestartScheduled(delay=delay):
            return Step(now, sup, "scheduled", child, f"{round(delay, 9)!r}")
        case GaveUp():
            return Step(now, sup, "gave_up", child)
    return None


@attrs.define(eq=False)
class TreeRunner:
    """A real tree, its leaves puppets, driven fault by fault on a ``MockClock``.

    ``run_tree`` drives one through a whole schedule; ``TreeMachine`` one
    rule at a time. Virtual time starts at 0 with the tree.

    Attributes:
        trace: What the runtime did, so far (API results come at the end, by
            the order the calls were made, from :meth:`result`).
        snapshots: The root's snapshot after each fault, with its time.
    """

    spec: SupervisorSpec | DynamicSupervisorSpec
    schedule: FaultSchedule
    puppets: TreePuppets = attrs.Factory(TreePuppets)
    trace: list[Step] = attrs.Factory(list)
    answers: dict[int, Step] = attrs.Factory(dict)
    snapshots: list[tuple[float, SupervisorSnapshot]] = attrs.Factory(list)
    handle: SupervisorHandle | DynamicSupervisorHandle | None = None
    exit_step: Step | None = None
    _calls: int = 0
    _stop_requested: bool = False

    def hook(self, event: Event) -> None:
        """Record the supervisor's events as trace steps."""
        step = _tree_step(event)
        if step is not None:
            self.trace.append(step)

    @property
    def finished(self) -> bool:
        """Whether the root has ended."""
        return self.handle is None or self.handle._core.finished.is_set()

    async def run(
        self,
        body: Callable[[TreeRunner, trio.Nursery], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> list[Step]:
        """Start the tree, run ``body`` (which applies faults), shut down; return the trace."""
        self.puppets.cleanup.update(dict(self.schedule.cleanup))
        spec = puppet_tree(self.spec, self.puppets)
        name = self.spec.name or "supervisor"
        async with trio.open_nursery() as watchers:
            try:
                async with open_supervisor(
                    spec, hooks=[self.hook], rng=random.Random(self.schedule.seed)
                ) as handle:
                    self.handle = handle
                    watchers.start_soon(self._watch_end, handle, name)
                    async with trio.open_nursery() as calls:
                        task_status.started()
                        await body(self, calls)
                        if not self.finished:
                            self._stop_requested = True
                            handle._core.request_stop()
            except MaxIntensityReached:
                pass  # the watcher records it
            except FailedToStartChild:
                self.exit_step = Step(trio.current_time(), name, "sup_exit", "", "failed_to_start")
        result = self.trace + [step for _, step in sorted(self.answers.items())]
        if self.exit_step is not None:
            result.append(self.exit_step)
        return result

    async def _watch_end(
        self, handle: SupervisorHandle | DynamicSupervisorHandle, name: str
    ) -> None:
        core = handle._core
        await core.finished.wait()
        why = "stopped" if self._stop_requested else "shutdown"
        if isinstance(core.error, MaxIntensityReached):
            why = "gave_up"
        self.exit_step = Step(trio.current_time(), name, "sup_exit", "", why)

    async def settle(self) -> None:
        """Let the tree carry out everything due now."""
        await trio.testing.wait_all_tasks_blocked()

    def act(self, fault: Fault, calls: trio.Nursery) -> None:
        """Apply one fault now (an API call runs in its own task, in ``calls``)."""
        assert self.handle is not None
        now = trio.current_time()
        if fault.op == "exit":
            if not self.puppets.exit(fault):
                self.trace.append(Step(now, fault.target, "skip", "", fault.reason))
            return
        if fault.op == "fail_starts":
            self.puppets.failures_left[fault.target] = fault.count
            return
        index = self._calls
        self._calls += 1
        core = _find_core(self.handle._core, fault.target)
        if core is None:
            self.answers[index] = Step(
                now, fault.target, "api", fault.child, f"{fault.op}=no_supervisor"
            )
            return
        calls.start_soon(self._call, index, core, fault)

    async def _call(self, index: int, core: Any, fault: Fault) -> None:
        result, child = "ok", fault.child
        try:
            if core.dynamic:
                if fault.op == "start_child":
                    child = await _operations.start_dynamic_child(core, ())
                elif fault.op == "terminate_child":
                    await _operations.terminate_child(core, fault.child)
                else:
                    result = "unsupported"
            elif fault.op == "start_child":
                start = self.puppets.worker
                spec = ChildSpec(id=fault.child, start=start, restart=Restart(fault.restart))
                await _operations.start_child(core, spec)
            else:
                await getattr(_operations, fault.op)(core, fault.child)
        except Exception as error:
            known = next((text for kind, text in _TREE_RESULTS if isinstance(error, kind)), None)
            if known is None:
                raise
            result = known
        self.answers[index] = Step(
            trio.current_time(), core.name, "api", child, f"{fault.op}={result}"
        )

    def snap(self) -> None:
        """Keep the root's snapshot now."""
        if self.handle is not None and not self.finished:
            self.snapshots.append((trio.current_time(), self.handle.snapshot()))


def _find_core(root: Any, name: str) -> Any:
    """The running supervisor named ``name`` in the tree under ``root``, if any."""
    stack = [root]
    while stack:
        core = stack.pop()
        if core.finished.is_set():
            continue
        if core.name == name:
            return core
        for child in core.children.values():
            inc = child.inc
            value: Any = None if inc is None else inc.value
            if getattr(value, "is_supervisor_handle", False):
                stack.append(value._core)
    return None


async def run_tree(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    schedule: FaultSchedule,
    *,
    runner: TreeRunner | None = None,
) -> list[Step]:
    """Run a fault schedule on the real runtime, its leaves puppets; return the trace.

    Run it under ``trio.run(..., clock=MockClock(autojump_threshold=0))``:
    faults happen at their virtual times, after everything due at that
    instant; the tree is shut down at ``schedule.end``.
    """
    runner = runner or TreeRunner(spec, schedule)

    async def body(run: TreeRunner, calls: trio.Nursery) -> None:
        for fault in schedule.faults:
            await trio.sleep_until(fault.at)
            await run.settle()
            if run.finished:
                return
            run.act(fault, calls)
            await run.settle()
            run.snap()
        await trio.sleep_until(schedule.end)
        await run.settle()

    return await runner.run(body)
