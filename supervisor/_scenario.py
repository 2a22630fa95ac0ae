"""Scenarios: a tree and a timed fault schedule, and the trace of running one.

The same JSON shape runs on three engines: the pure reference model
(``_model.simulate``), our runtime on a mock clock (``_harness.run_scenario``)
and a real Erlang/OTP supervisor (``tests/conformance``). Equal traces mean
equal behaviour.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import attrs

StrategyName: TypeAlias = Literal[
    "one_for_one", "rest_for_one", "one_for_all", "simple_one_for_one"
]
RestartName: TypeAlias = Literal["permanent", "transient", "temporary"]
CrashReason: TypeAlias = Literal["abnormal", "normal", "shutdown", "shutdown_r"]
Op: TypeAlias = Literal[
    "crash", "fail_starts", "terminate_child", "restart_child", "delete_child", "start_child"
]
#: One line of a trace, e.g. ``["start", "c1"]`` or ``["api", "restart_child", "c2", "running"]``.
TraceLine: TypeAlias = list[str]


@attrs.frozen(kw_only=True)
class ScenarioChild:
    """A child of a scenario's supervisor (the template, for ``simple_one_for_one``)."""

    id: str
    restart: RestartName = "permanent"


@attrs.frozen(kw_only=True)
class Action:
    """One timed step of a fault schedule.

    Attributes:
        at: Seconds after the supervisor finished starting.
        op: ``crash`` (the child exits by itself with ``reason``),
            ``fail_starts`` (its next ``count`` starts fail), or an API call.
        child: The child's id (for dynamic children: the name the scenario
            gave it in its ``start_child``).
        reason: For ``crash``.
        count: For ``fail_starts``.
        restart: For ``start_child`` on a static supervisor.
    """

    at: float
    op: Op
    child: str
    reason: CrashReason = "abnormal"
    count: int = 1
    restart: RestartName = "permanent"

    def to_json(self) -> dict[str, Any]:
        """The harness's JSON object."""
        data: dict[str, Any] = {"at": self.at, "op": self.op, "child": self.child}
        if self.op == "crash":
            data["reason"] = self.reason
        elif self.op == "fail_starts":
            data["count"] = self.count
        elif self.op == "start_child":
            data["restart"] = self.restart
        return data


@attrs.frozen(kw_only=True)
class Scenario:
    """A supervisor, its children, and a fault schedule.

    Attributes:
        init_fail: Child id to the number of its first starts that fail, to
            script a failing supervisor start.
    """

    strategy: StrategyName
    intensity: int
    period: int
    children: tuple[ScenarioChild, ...]
    actions: tuple[Action, ...] = ()
    init_fail: tuple[tuple[str, int], ...] = ()

    @property
    def dynamic(self) -> bool:
        """Whether this is a ``simple_one_for_one`` (dynamic) supervisor."""
        return self.strategy == "simple_one_for_one"

    def to_json(self) -> dict[str, Any]:
        """The harness's JSON object."""
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "children": [{"id": c.id, "restart": c.restart} for c in self.children],
            "actions": [a.to_json() for a in self.actions],
        }
        if self.init_fail:
            data["init_fail"] = dict(self.init_fail)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        """Read the harness's JSON object."""
        return cls(
            strategy=data["strategy"],
            intensity=data["intensity"],
            period=data["period"],
            children=tuple(ScenarioChild(**c) for c in data["children"]),
            actions=tuple(Action(**a) for a in data.get("actions", ())),
            init_fail=tuple(sorted(data.get("init_fail", {}).items())),
        )


# ------------------------------------------------------------ a user's own tree

FaultOp: TypeAlias = Literal[
    "exit", "fail_starts", "start_child", "terminate_child", "restart_child", "delete_child"
]


@attrs.frozen(kw_only=True)
class Fault:
    """One timed step of a fault schedule for a real tree (see :func:`fault_schedules`).

    Attributes:
        at: Virtual seconds since the tree started (the clock starts at 0).
        op: ``exit`` (the leaf's running incarnation exits by itself with
            ``reason``), ``fail_starts`` (its next ``count`` starts fail), or an
            API call on the supervisor named ``target``.
        target: A leaf's path (``<supervisor name>/<child id>``) for ``exit``
            and ``fail_starts``; a supervisor's name for an API call.
        child: The child id an API call names (for a dynamic supervisor's
            ``start_child``: unused, the supervisor picks the id).
        reason: For ``exit``.
        delay: For an ``abnormal`` exit: the delay the failure asks for (a
            FloodWait's seconds), or ``None``.
        count: For ``fail_starts``.
        restart: For a static supervisor's ``start_child``: the new leaf's restart type.
        kind: For ``exit``: the failure kind it declares (``supervisor_failure_kind``),
            for the supervisor's ``failure_policy``; ``None``: ``"unknown"``
            for an abnormal exit, none for the others.
    """

    at: float
    op: FaultOp
    target: str
    child: str = ""
    reason: CrashReason = "abnormal"
    delay: float | None = None
    count: int = 1
    restart: RestartName = "permanent"
    kind: str | None = None

    def __str__(self) -> str:
        if self.op == "exit":
            delay = "" if self.delay is None else f" (asks {self.delay:g}s)"
            kind = "" if self.kind is None else f" [{self.kind}]"
            return f"{self.at:g}s: {self.target} exits {self.reason}{kind}{delay}"
        if self.op == "fail_starts":
            return f"{self.at:g}s: the next {self.count} start(s) of {self.target} fail"
        return f"{self.at:g}s: {self.target}.{self.op}({self.child!r})"


@attrs.frozen(kw_only=True)
class FaultSchedule:
    """Faults for a tree, and how its puppets behave.

    Attributes:
        faults: In time order, at distinct times.
        cleanup: Leaf path to the seconds its puppet spends cleaning up when
            stopped (inside ``shutdown_grace``), to exercise grace.
        seed: Seeds the backoff jitter's ``random.Random`` (runtime and model alike).
        end: When the tree is shut down.
    """

    faults: tuple[Fault, ...] = ()
    cleanup: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    end: float = 1.0

    def __str__(self) -> str:
        lines = [str(f) for f in self.faults]
        lines += [f"cleanup of {path}: {seconds:g}s" for path, seconds in self.cleanup]
        return "\n".join([*lines, f"seed {self.seed}, shut down at {self.end:g}s"])


def _nano(seconds: float) -> float:
    return round(seconds, 9)


@attrs.frozen(order=True)
class Step:
    """One line of a tree's trace: what a supervisor did, when.

    Attributes:
        time: Virtual seconds (rounded to 1e-9).
        supervisor: The supervisor's name (a subtree's is ``parent/child``).
        event: ``start``, ``restart``, ``start_failed``, ``exit``, ``stop``,
            ``timed_out``, ``scheduled``, ``gave_up``; ``skip`` (a fault that
            found its leaf not running), ``api`` (a call's result) and
            ``sup_exit`` (the root ended).
        child: The child's id.
        detail: ``exit``: ``kind:action``; ``scheduled``: the delay;
            ``api``: ``op=result``; ``sup_exit``: why.
    """

    time: float = attrs.field(converter=_nano)
    supervisor: str
    event: str
    child: str = ""
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.time:9.3f}  {self.supervisor}  {self.event} {self.child}"
        return f"{text} {self.detail}".rstrip()
