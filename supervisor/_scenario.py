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
