"""The reference model: OTP's supervisor semantics as a pure, sequential simulation.

It shares only the pure policy (``specs.policy``) with the runtime, never its
code: a runtime that carries the policy out wrongly (order, retries, intensity
bookkeeping, API results) produces a different trace. It has no clock of its
own and no backoff: everything an action causes happens at its instant.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, overload

import attrs

from specs import (
    BRUTAL_KILL,
    ChildSpec,
    DynamicSupervisorSpec,
    Restart,
    Strategy,
    SupervisorSpec,
)
from specs._spec import accepts_task_status
from specs.policy import (
    ChildView,
    ExitAction,
    ExitKind,
    FailureVerdict,
    add_restart,
    auto_shutdown_due,
    count_failure,
    exit_action,
    failed_start,
    judge_failure,
    plan_restart,
    restart_delay,
)

from ._reasons import UNKNOWN_KIND
from ._scenario import Action, Fault, FaultSchedule, Scenario, Step, TraceLine

_KINDS = {
    "abnormal": ExitKind.ABNORMAL,
    "normal": ExitKind.NORMAL,
    "shutdown": ExitKind.SHUTDOWN,
    "shutdown_r": ExitKind.SHUTDOWN,
}


@attrs.define
class _ModelChild:
    id: str
    restart: Restart
    running: bool = False
    restarting: bool = False


@attrs.define
class _Model:
    scenario: Scenario
    trace: list[TraceLine] = attrs.Factory(list)
    children: list[_ModelChild] = attrs.Factory(list)
    restarts: tuple[float, ...] = ()
    fail_next: dict[str, int] = attrs.Factory(dict)
    try_again: deque[str] = attrs.Factory(deque)
    alive: bool = True
    now: float = 0.0

    @property
    def strategy(self) -> Strategy:
        if self.scenario.dynamic:
            return Strategy.ONE_FOR_ONE
        return Strategy(self.scenario.strategy)

    def find(self, child_id: str) -> _ModelChild | None:
        return next((c for c in self.children if c.id == child_id), None)

    def try_start(self, child: _ModelChild) -> bool:
        if self.fail_next.get(child.id, 0) > 0:
            self.fail_next[child.id] -= 1
            self.trace.append(["start_failed", child.id])
            return False
        self.trace.append(["start", child.id])
        child.running = True
        child.restarting = False
        return True

    def stop(self, child: _ModelChild) -> None:
        if child.running:
            self.trace.append(["stop", child.id])
            child.running = False

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)

    def init(self) -> bool:
        self.fail_next.update(dict(self.scenario.init_fail))
        if self.scenario.dynamic:
            return True
        self.children = [_ModelChild(c.id, Restart(c.restart)) for c in self.scenario.children]
        for child in self.children:
            if not self.try_start(child):
                self.stop_all()
                self.trace.append(["sup_exit", "failed_to_start"])
                self.alive = False
                return False
        return True

    def restart(self, child: _ModelChild) -> None:
        self.restarts, allowed = add_restart(
            self.restarts, self.now, intensity=self.scenario.intensity, period=self.scenario.period
        )
        if not allowed:
            self.trace.append(["gave_up", child.id])
            child.restarting = False
            if child.restart is Restart.TEMPORARY:
                self.children.remove(child)
            self.stop_all()
            self.trace.append(["sup_exit", "gave_up"])
            self.alive = False
            return
        views = [ChildView(c.id, c.restart, c.running) for c in self.children]
        plan = plan_restart(self.strategy, views, child.id)
        for child_id in plan.stop:
            stopped = self.find(child_id)
            assert stopped is not None
            self.stop(stopped)
        self.children = [c for c in self.children if c.id not in plan.remove]
        for child_id in plan.start:
            starting = self.find(child_id)
            if starting is None or starting.running:
                continue
            if not self.try_start(starting):
                left = failed_start(plan.start, child_id)
                starting.restarting = True
                for later_id in left.stopped:
                    later = self.find(later_id)
                    if later is not None:
                        later.restarting = False
                self.try_again.append(left.retry)
                return
        # children started means none of them is restarting any more
        for child_id in plan.start:
            started = self.find(child_id)
            if started is not None:
                started.restarting = False

    def crash(self, action: Action) -> None:
        child = self.find(action.child)
        if child is None or not child.running:
            self.trace.append(["skip", "crash", action.child])
            return
        child.running = False
        verdict = exit_action(child.restart, _KINDS[action.reason], dynamic=self.scenario.dynamic)
        if verdict is ExitAction.RESTART:
            self.restart(child)
        elif verdict is ExitAction.REMOVE:
            self.children.remove(child)

    def api(self, action: Action) -> None:
        child = self.find(action.child)
        op = action.op
        if op == "start_child":
            result = self.start_child(action, child)
        elif self.scenario.dynamic and op in ("restart_child", "delete_child"):
            result = "simple_one_for_one"  # a dynamic supervisor has no such calls
        elif child is None:
            result = "not_found"
        elif op == "terminate_child":
            self.stop(child)
            child.restarting = False
            if self.scenario.dynamic or child.restart is Restart.TEMPORARY:
                self.children.remove(child)
            result = "ok"
        elif child.running:
            result = "running"
        elif child.restarting:
            result = "restarting"
        elif op == "restart_child":
            result = "ok" if self.try_start(child) else "error"
        else:  # delete_child
            self.children.remove(child)
            result = "ok"
        self.trace.append(["api", op, action.child, result])

    def start_child(self, action: Action, child: _ModelChild | None) -> str:
        if child is not None:
            return "already_started" if child.running else "already_present"
        restart = self.scenario.children[0].restart if self.scenario.dynamic else action.restart
        child = _ModelChild(action.child, Restart(restart))
        self.children.append(child)
        if self.try_start(child):
            return "ok"
        self.children.remove(child)
        return "error"

    def run(self) -> list[TraceLine]:
        if not self.init():
            return self.trace
        for action in self.scenario.actions:
            self.now = action.at
            if action.op == "crash":
                self.crash(action)
            elif action.op == "fail_starts":
                self.fail_next[action.child] = action.count
            else:
                self.api(action)
            while self.alive and self.try_again:
                child = self.find(self.try_again.popleft())
                if child is not None and child.restarting:
                    self.restart(child)
            if not self.alive:
                return self.trace
        self.stop_all()
        self.trace.append(["sup_exit", "stopped"])
        return self.trace


@overload
def simulate(scenario: Scenario, schedule: None = None) -> list[TraceLine]: ...


@overload
def simulate(
    scenario: SupervisorSpec | DynamicSupervisorSpec, schedule: FaultSchedule
) -> list[Step]: ...


def simulate(
    scenario: Scenario | SupervisorSpec | DynamicSupervisorSpec,
    schedule: FaultSchedule | None = None,
) -> list[TraceLine] | list[Step]:
    """Run a scenario, or a real tree and its fault schedule, on the reference model.

    ``simulate(scenario)``: actions run in time order and everything they
    cause happens at their instant (no backoff), as on OTP. Shutdown of a
    dynamic supervisor stops its children in reverse start order here; OTP
    stops them all at once, so compare such runs with :func:`normalise_trace`.

    ``simulate(spec, schedule)``: everything the runtime does (backoff and its
    reset, a failure's own delay, subtrees and escalation, shutdown grace,
    dynamic children, auto shutdown, API calls), on virtual time: the trace
    :func:`~supervisor.testing.run_tree` must produce.

    Raises:
        Unmodelled: (a tree) the outcome depends on the order of simultaneous events.
    """
    if isinstance(scenario, Scenario):
        return _Model(scenario).run()
    if schedule is None:
        msg = "simulate(spec, schedule) needs a FaultSchedule for a tree"
        raise TypeError(msg)
    return simulate_tree(scenario, schedule)


def normalise_trace(trace: list[TraceLine]) -> list[TraceLine]:
    """Sort each run of consecutive ``stop`` lines (for concurrent shutdowns)."""
    result: list[TraceLine] = []
    run: list[TraceLine] = []
    for line in [*trace, ["end"]]:
        if line[0] == "stop":
            run.append(line)
            continue
        result.extend(sorted(run))
        run = []
        if line != ["end"]:
            result.append(line)
    return result


# ===================================================== the model of a real tree
#
# A discrete-event simulation: every supervisor is a process with its own
# queue, run one message at a time; stopping a child with a cleanup takes
# virtual time during which its supervisor is blocked and messages queue up.
# Operations that take time are generators yielding the instant they wait
# for. The policy decisions are ``specs.policy``'s, called in the order the
# runtime calls them (the jitter draws included).


class Unmodelled(Exception):
    """A schedule whose outcome the model cannot tell: it depends on the order of
    simultaneous, independent events (two timers due at one instant), or on
    interrupting a supervisor in the middle of stopping a child.

    ``fault_schedules`` never draws one; a hand-written schedule gets this error.
    """


_EPS = 1e-9
_PARK = object()


@attrs.define(eq=False)
class _Pending:
    """A pending restart; its identity is the token (as the runtime's ``Restarting``)."""

    at: float | None = None


@attrs.define(eq=False)
class _Kid:
    spec: ChildSpec
    id: str
    live: bool = False  # started (its supervisor's view: until its exit is handled)
    pending: _Pending | None = None
    task_alive: bool = False  # its code still runs
    inc: int = 0
    sub: _Sup | None = None
    started_at: float = 0.0
    failures: int = 0
    last_run: float = 0.0
    hint: float | None = None
    budgets: dict[str, tuple[float, ...]] = attrs.Factory(dict)

    def view(self) -> ChildView:
        return ChildView(
            self.id,
            self.spec.restart,
            self.live,
            restarting=self.pending is not None,
            significant=self.spec.significant,
        )


@attrs.define(eq=False)
class _Sup:
    sim: _Sim
    spec: SupervisorSpec | DynamicSupervisorSpec
    name: str
    parent: tuple[_Sup, _Kid] | None = None
    inc: int = 0
    kids: dict[str, _Kid] = attrs.Factory(dict)
    restarts: tuple[float, ...] = ()
    error: str | None = None
    stopping: str | None = None
    serving: bool = False
    done: bool = False
    state: str = "parked"  # parked (waiting for a message), busy, done
    queue: deque[tuple[Any, ...]] = attrs.Factory(deque)
    gen: Generator[Any, None, None] | None = None
    dynamic_ids: int = 0

    @property
    def dynamic(self) -> bool:
        return isinstance(self.spec, DynamicSupervisorSpec)

    @property
    def strategy(self) -> Strategy:
        return self.spec.strategy if isinstance(self.spec, SupervisorSpec) else Strategy.ONE_FOR_ONE

    def emit(
        self, event: str, child: str = "", detail: str = "", *, at: float | None = None
    ) -> None:
        self.sim.trace.append(
            Step(self.sim.now if at is None else at, self.name, event, child, detail)
        )

    def post(self, message: tuple[Any, ...]) -> None:
        if self.done:
            if message[0] == "call":
                self.sim.answer(message[1], "not_running")
            return
        self.queue.append(message)
        if self.state == "parked" and self.gen is not None:
            self.state = "busy"
            self.sim.ready.append(self)

    # -------------------------------------------------------------- lifecycle

    def init(self) -> Generator[Any, None, bool]:
        if isinstance(self.spec, SupervisorSpec):
            for spec in self.spec.children:
                self.kids[spec.id] = _Kid(spec, spec.id)
            for kid in list(self.kids.values()):
                ok = yield from self.start(kid)
                if not ok:
                    self.error = "failed_to_start"
                    yield from self.finish(report=False)
                    return False
        self.serving = True
        self.gen = self.serve()
        return True

    def serve(self) -> Generator[Any, None, None]:
        while self.error is None and self.stopping is None:
            if not self.queue:
                yield _PARK
                continue
            yield from self.dispatch(self.queue.popleft())
        yield from self.finish(report=True)

    def finish(self, *, report: bool) -> Generator[Any, None, None]:
        self.serving = False
        yield from self.stop_all()
        self.close()
        if self.parent is None:
            self.sim.root_exit = Step(
                self.sim.now, self.name, "sup_exit", "", self.error or self.stopping or "stopped"
            )
        elif report:
            parent, kid = self.parent
            kid.task_alive = False
            kind = ExitKind.SHUTDOWN if self.error == "gave_up" else ExitKind.NORMAL
            parent.post(("exited", kid.id, self.inc, kind, None, None))

    def close(self) -> None:
        self.done = True
        self.state = "done"
        while self.queue:
            message = self.queue.popleft()
            if message[0] == "call":
                self.sim.answer(message[1], "not_running")

    def stopped_by_parent(self) -> Generator[Any, None, None]:
        if self.done:
            return
        if self.state != "parked":
            raise Unmodelled(f"{self.name} is stopped while it is busy")
        if self.gen is not None:
            self.gen.close()
        self.state = "busy"
        self.serving = False
        yield from self.stop_all()
        self.close()

    # --------------------------------------------------------------- children

    def start(self, kid: _Kid, *, restarted: bool = False) -> Generator[Any, None, bool]:
        sim = self.sim
        kid.inc += 1
        ok = True
        start = kid.spec.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            sub = _Sup(sim, start, start.name or f"{self.name}/{kid.id}", (self, kid), kid.inc)
            kid.sub = sub
            ok = yield from sub.init()
        else:
            path = f"{self.name}/{kid.id}"
            if sim.failures_left.get(path, 0) > 0:
                if not accepts_task_status(start):
                    raise Unmodelled(f"{path} has no task_status: it cannot fail to start")
                sim.failures_left[path] -= 1
                ok = False
            else:
                sim.running[path] = (self, kid.id, kid.inc)
        if not ok:
            kid.live = False
            kid.last_run, kid.hint = 0.0, None
            self.emit("start_failed", kid.id)
            return False
        kid.live = kid.task_alive = True
        kid.pending = None
        kid.started_at = sim.now
        self.emit("restart" if restarted else "start", kid.id)
        return True

    def grace(self, kid: _Kid) -> float:
        shutdown = kid.spec.shutdown
        return 0.0 if shutdown is BRUTAL_KILL else float(shutdown)

    def terminate(self, kid: _Kid) -> Generator[Any, None, None]:
        if not kid.live:
            return
        sim = self.sim
        grace = self.grace(kid)
        if kid.sub is not None and kid.task_alive:
            begin = sim.now
            yield from kid.sub.stopped_by_parent()
            if sim.now > begin + grace + _EPS:
                raise Unmodelled(f"{kid.sub.name} takes longer to stop than its grace")
        else:
            sim.running.pop(f"{self.name}/{kid.id}", None)
            cleanup = sim.cleanup.get(f"{self.name}/{kid.id}", 0.0) if kid.task_alive else 0.0
            if cleanup > 0 and grace > 0:
                yield sim.now + min(cleanup, grace)
                if cleanup >= grace:
                    self.emit("timed_out", kid.id)
        self.stopped(kid)

    def stopped(self, kid: _Kid) -> None:
        kid.live = kid.task_alive = False
        self.emit("stop", kid.id)

    def stop_all(self) -> Generator[Any, None, None]:
        for kid in self.kids.values():
            kid.pending = None
        if not self.dynamic:
            for kid in reversed(list(self.kids.values())):
                yield from self.terminate(kid)
            return
        # a dynamic supervisor stops its children all at once
        live = [kid for kid in self.kids.values() if kid.live]
        if len(live) == 1:
            yield from self.terminate(live[0])
            return
        if any(kid.sub is not None for kid in live):
            raise Unmodelled(f"{self.name} stops several subtrees at once")
        sim, begin = self.sim, self.sim.now
        ends: list[tuple[_Kid, float, bool]] = []
        for kid in live:
            path = f"{self.name}/{kid.id}"
            sim.running.pop(path, None)
            grace = self.grace(kid)
            cleanup = sim.cleanup.get(path, 0.0) if kid.task_alive else 0.0
            took = min(cleanup, grace) if cleanup > 0 and grace > 0 else 0.0
            ends.append((kid, begin + took, cleanup > 0 and 0 < grace <= cleanup))
        for kid, end, cut in ends:
            if end > sim.now:
                yield end
            if cut:
                self.emit("timed_out", kid.id)
            self.stopped(kid)

    # ----------------------------------------------------------------- policy

    def dispatch(self, message: tuple[Any, ...]) -> Generator[Any, None, None]:
        match message:
            case ("exited", child_id, inc, kind, hint, failure):
                yield from self.on_exit(child_id, inc, kind, hint, failure)
            case ("try_again", child_id, token):
                kid = self.kids.get(child_id)
                if kid is not None and kid.pending is token:
                    yield from self.restart(kid)
            case ("due", token, ids):
                due = [c for c in ids if (k := self.kids.get(c)) and k.pending is token]
                yield from self.start_group(due)
            case ("call", index, fault):
                yield from self.api(index, fault)
            case ("stop",):
                self.stopping = "stopped"

    def on_exit(
        self, child_id: str, inc: int, kind: ExitKind, hint: float | None, failure: str | None
    ) -> Generator[Any, None, None]:
        kid = self.kids.get(child_id)
        if kid is None or not kid.live or kid.inc != inc:
            return
        now = self.sim.now
        kid.live = kid.task_alive = False
        kid.last_run, kid.hint = now - kid.started_at, hint
        action = exit_action(kid.spec.restart, kind, dynamic=self.dynamic)
        policy = self.spec.failure_policy
        verdict = None
        if policy is not None and failure is not None:
            verdict = judge_failure(
                policy,
                failure,
                action,
                kid.budgets,
                now=now,
                last_run=kid.last_run,
                backoff=self.spec.backoff,
                period=self.spec.period,
            )
            kid.budgets, action = verdict.budgets, verdict.action
        self.emit("exit", kid.id, f"{kind.value}:{action.value}")
        if action is ExitAction.RESTART:
            yield from self.restart(kid, verdict)
            return
        if action is ExitAction.ESCALATE:
            self.give_up(kid)
            return
        if action is ExitAction.REMOVE:
            del self.kids[kid.id]
        if isinstance(self.spec, SupervisorSpec) and auto_shutdown_due(
            self.spec.auto_shutdown,
            significant=kid.spec.significant,
            siblings=(k.view() for k in self.kids.values() if k is not kid),
        ):
            self.stopping = "shutdown"

    def give_up(self, kid: _Kid) -> None:
        self.emit("gave_up", kid.id)
        kid.pending = None
        if kid.spec.restart is Restart.TEMPORARY:
            del self.kids[kid.id]
        self.error = "gave_up"

    def restart(
        self, kid: _Kid, verdict: FailureVerdict | None = None
    ) -> Generator[Any, None, None]:
        now = self.sim.now
        self.restarts, allowed = add_restart(
            self.restarts, now, intensity=self.spec.intensity, period=self.spec.period
        )
        if not allowed:
            self.give_up(kid)
            return
        kid.failures = count_failure(kid.failures, last_run=kid.last_run, backoff=self.spec.backoff)
        failures, backoff = kid.failures, self.spec.backoff
        if verdict is not None:  # the failure policy paces it by the failure's kind
            failures, backoff = verdict.failures, verdict.backoff
        strategy = self.strategy
        views = [] if strategy is Strategy.ONE_FOR_ONE else [k.view() for k in self.kids.values()]
        plan = plan_restart(strategy, views, kid.id)
        for child_id in plan.stop:
            yield from self.terminate(self.kids[child_id])
        for child_id in plan.remove:
            del self.kids[child_id]
        delay = restart_delay(backoff, failures, hint=kid.hint, rng=self.sim.rng)
        if delay > 0:
            token = _Pending(now + delay)
            for child_id in plan.start:
                self.kids[child_id].pending = token
            self.emit("scheduled", kid.id, _seconds(delay), at=now)
            self.sim.at(
                max(now + delay, self.sim.now), lambda: self.post(("due", token, plan.start))
            )
            return
        yield from self.start_group(plan.start)

    def start_group(self, ids: Sequence[str]) -> Generator[Any, None, None]:
        ids = tuple(ids)
        for child_id in ids:
            kid = self.kids.get(child_id)
            if kid is None or kid.live:
                continue
            ok = yield from self.start(kid, restarted=True)
            if ok:
                continue
            left = failed_start(ids, child_id)
            for later_id in left.stopped:
                if (later := self.kids.get(later_id)) is not None:
                    later.pending = None
            token = _Pending()
            kid.pending = token
            self.post(("try_again", left.retry, token))
            return

    # -------------------------------------------------------------------- API

    def api(self, index: int, fault: Fault) -> Generator[Any, None, None]:
        kid = self.kids.get(fault.child)
        result = "ok"
        child = fault.child
        if fault.op == "start_child":
            if isinstance(self.spec, DynamicSupervisorSpec):
                limit = self.spec.max_children
                if limit is not None and len(self.kids) >= limit:
                    result = "max_children"
                else:
                    self.dynamic_ids += 1
                    child = f"{self.spec.template.id}-{self.dynamic_ids}"
                    kid = self.kids[child] = _Kid(self.spec.template, child)
                    if not (yield from self.start(kid)):
                        del self.kids[child]
                        result, child = "error", fault.child  # no id is returned
            elif kid is not None:
                result = "already_started" if kid.live else "already_present"
            else:
                spec = ChildSpec(id=fault.child, start=_leaf, restart=Restart(fault.restart))
                kid = self.kids[fault.child] = _Kid(spec, fault.child)
                if not (yield from self.start(kid)):
                    del self.kids[fault.child]
                    result = "error"
        elif self.dynamic and fault.op in ("restart_child", "delete_child"):
            result = "unsupported"
        elif kid is None:
            result = "not_found"
        elif fault.op == "terminate_child":
            kid.pending = None
            yield from self.terminate(kid)
            if self.dynamic or kid.spec.restart is Restart.TEMPORARY:
                del self.kids[kid.id]
        elif kid.live:
            result = "running"
        elif kid.pending is not None:
            result = "restarting"
        elif fault.op == "restart_child":
            if not (yield from self.start(kid)):
                result = "error"
        else:  # delete_child
            del self.kids[kid.id]
        self.sim.answer(index, result, child=child, supervisor=self.name)


async def _leaf(task_status: Any = None) -> None:
    """What a model's API-started child runs: nothing (the model never runs it)."""


def _seconds(value: float) -> str:
    return f"{round(value, 9)!r}"


@attrs.define(eq=False)
class _Sim:
    spec: SupervisorSpec | DynamicSupervisorSpec
    schedule: FaultSchedule
    rng: random.Random
    now: float = 0.0
    trace: list[Step] = attrs.Factory(list)
    answers: dict[int, Step] = attrs.Factory(dict)
    heap: list[tuple[float, int, int, Callable[[], None]]] = attrs.Factory(list)
    ready: deque[_Sup] = attrs.Factory(deque)
    running: dict[str, tuple[_Sup, str, int]] = attrs.Factory(dict)
    failures_left: dict[str, int] = attrs.Factory(dict)
    cleanup: dict[str, float] = attrs.Factory(dict)
    root: _Sup | None = None
    root_exit: Step | None = None
    calls: dict[int, Fault] = attrs.Factory(dict)
    boot: Generator[Any, None, None] | None = None
    _seq: int = 0

    def at(self, when: float, action: Callable[[], None], *, fault: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (when, 1 if fault else 0, self._seq, action))

    def answer(
        self, index: int, result: str, *, child: str | None = None, supervisor: str | None = None
    ) -> None:
        fault = self.calls[index]
        self.answers[index] = Step(
            self.now,
            supervisor or fault.target,
            "api",
            fault.child if child is None else child,
            f"{fault.op}={result}",
        )

    def step(self, sup: _Sup, first: Generator[Any, None, Any] | None = None) -> None:
        gen = first or sup.gen
        assert gen is not None
        try:
            waited = next(gen)
        except StopIteration:
            sup.state = "done"
            return
        if waited is _PARK:
            sup.state = "parked"
            return
        sup.state = "busy"
        self.at(waited, lambda: self._resume(sup, gen))

    def _resume(self, sup: _Sup, gen: Generator[Any, None, Any]) -> None:
        self.step(sup, gen)

    def run(self) -> list[Step]:
        self.start()
        for index, fault in enumerate(self.schedule.faults):
            self.add(index, fault)
        return self.finish(self.schedule.end)

    def start(self) -> None:
        """Start the root (at time 0)."""
        self.cleanup = dict(self.schedule.cleanup)
        root = self.root = _Sup(self, self.spec, self.spec.name or "supervisor")
        # kept: a generator dropped mid-``yield from`` would close the root's loop with it
        self.boot = self._boot(root)
        self.step(root, self.boot)
        self._loop()

    def add(self, index: int, fault: Fault) -> None:
        """Schedule the ``index``-th fault (at ``fault.at``, not before the present)."""
        self.at(fault.at, lambda: self.fault(index, fault), fault=True)

    def advance(self, until: float) -> None:
        """Carry out everything due up to ``until``, faults included."""
        self._loop(until)
        self.now = max(self.now, until)

    def so_far(self) -> list[Step]:
        """The trace up to now, API results at the end (by call order)."""
        return self.trace + [step for _, step in sorted(self.answers.items())]

    def finish(self, end: float) -> list[Step]:
        """Shut the root down at ``end``, run to the end; return the whole trace."""
        root = self.root
        assert root is not None
        self.at(end, lambda: root.post(("stop",)), fault=True)
        self._loop()
        trace = self.so_far()
        if self.root_exit is not None:
            trace.append(self.root_exit)
        return trace

    def _boot(self, root: _Sup) -> Generator[Any, None, None]:
        root.state = "busy"
        if (yield from root.init()):
            assert root.gen is not None
            yield from root.gen

    def _loop(self, until: float = math.inf) -> None:
        while True:
            while self.ready:
                if len(self.ready) > 1:
                    raise Unmodelled(f"simultaneous events at {self.now:g}s")
                sup = self.ready.popleft()
                if sup.state != "done":
                    self.step(sup)
            if not self.heap or self.heap[0][0] > until:
                return
            when, fault, _, action = heapq.heappop(self.heap)
            if self.heap:
                other, other_fault, _, _ = self.heap[0]
                close = abs(other - when) < _EPS
                if close and (other != when or not (fault or other_fault)):
                    raise Unmodelled(f"two things are due at {when:g}s")
            if self.root is not None and self.root.done and fault:
                continue
            self.now = when
            action()

    def fault(self, index: int, fault: Fault) -> None:
        if fault.op == "exit":
            found = self.running.pop(fault.target, None)
            if found is None:
                self.trace.append(Step(self.now, fault.target, "skip", "", fault.reason))
                return
            sup, child_id, inc = found
            kind = _KINDS[fault.reason]
            hint = fault.delay if fault.reason == "abnormal" else None
            # a return raises nothing, so it declares no kind
            failure = fault.kind or (UNKNOWN_KIND if fault.reason == "abnormal" else None)
            if fault.reason == "normal":
                failure = None
            kid = sup.kids.get(child_id)
            if kid is not None and kid.inc == inc:
                kid.task_alive = False
            sup.post(("exited", child_id, inc, kind, hint, failure))
        elif fault.op == "fail_starts":
            self.failures_left[fault.target] = fault.count
        else:
            self.calls[index] = fault
            target = self.find(fault.target)
            if target is None:
                self.answer(index, "no_supervisor")
            else:
                target.post(("call", index, fault))

    def find(self, name: str) -> _Sup | None:
        stack: list[_Sup | None] = [self.root]
        while stack:
            sup = stack.pop()
            if sup is None or sup.done:
                continue
            if sup.name == name:
                return sup
            stack.extend(k.sub for k in sup.kids.values() if k.live and k.task_alive)
        return None


def simulate_tree(
    spec: SupervisorSpec | DynamicSupervisorSpec, schedule: FaultSchedule
) -> list[Step]:
    """Run a fault schedule on the model of a real tree and return the trace it predicts.

    Raises:
        Unmodelled: the outcome depends on the order of simultaneous events.
    """
    return _Sim(spec, schedule, random.Random(schedule.seed)).run()
