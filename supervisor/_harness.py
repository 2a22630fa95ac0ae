"""Scripted workers, and running a :class:`Scenario` on the real runtime."""

from __future__ import annotations

from collections.abc import Callable

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

from ._api import DynamicSupervisorHandle, SupervisorHandle, open_supervisor
from ._child import shutdown_grace
from ._events import (
    ChildRestarted,
    ChildStarted,
    ChildTerminated,
    Event,
    GaveUp,
    StartFailed,
)
from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    FailedToStartChild,
    MaxIntensityReached,
    Shutdown,
)
from ._scenario import Action, Scenario, TraceLine


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
