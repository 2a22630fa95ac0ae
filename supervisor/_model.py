"""The reference model: OTP's supervisor semantics as a pure, sequential simulation.

It shares only the pure policy (``specs.policy``) with the runtime, never its
code: a runtime that carries the policy out wrongly (order, retries, intensity
bookkeeping, API results) produces a different trace. It has no clock of its
own and no backoff: everything an action causes happens at its instant.
"""

from __future__ import annotations

from collections import deque

import attrs

from specs import Restart, Strategy
from specs.policy import (
    ChildView,
    ExitAction,
    ExitKind,
    add_restart,
    exit_action,
    failed_start,
    plan_restart,
)

from ._scenario import Action, Scenario, TraceLine

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


def simulate(scenario: Scenario) -> list[TraceLine]:
    """Run a scenario on the reference model and return its trace.

    Actions run in time order and everything they cause happens at their
    instant (no backoff), as on OTP. Shutdown of a dynamic supervisor stops
    its children in reverse start order here; OTP stops them all at once, so
    compare such runs with :func:`normalise_trace`.
    """
    return _Model(scenario).run()


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
