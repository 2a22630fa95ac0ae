"""Introspection values: frozen, JSON-serialisable views of a running tree."""

from __future__ import annotations

import enum
from typing import Any

import attrs


class ChildState(enum.Enum):
    """Where a child is in its life."""

    #: Its start was called; it has not signalled ready yet.
    STARTING = "starting"
    #: It is running.
    RUNNING = "running"
    #: Its restart is pending (a backoff delay, or a retry after a failed start).
    RESTARTING = "restarting"
    #: It is not running and nothing will start it but ``restart_child``
    #: (OTP's ``undefined`` pid).
    STOPPED = "stopped"


@attrs.frozen(kw_only=True)
class ChildInfo:
    """One row of ``which_children()``.

    Attributes:
        id: The child's id.
        state: Its :class:`ChildState`.
        kind: ``"worker"`` or ``"supervisor"``.
        incarnation: How many times it has been started (0: never).
        value: What it passed to ``task_status.started()`` this incarnation
            (a subtree's handle for a nested supervisor).
    """

    id: str
    state: ChildState
    kind: str
    incarnation: int
    value: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ChildCounts:
    """``count_children()``: OTP's ``[{specs,_},{active,_},{supervisors,_},{workers,_}]``."""

    specs: int
    active: int
    supervisors: int
    workers: int


@attrs.frozen(kw_only=True)
class ChildSnapshot:
    """One child in a :class:`SupervisorSnapshot`.

    Attributes:
        uptime: Seconds since the current incarnation started, if running.
        restarts: Automatic restarts of this child so far.
        next_restart_in: Seconds until a pending restart, if one is scheduled.
        last_exit: The last exit reason, as text.
        exits_by_kind: How many times it exited, by failure kind (the
            exception's class name, or ``normal``/``shutdown``).
        recent_exits: The last few exits as ``(time, reason)``.
        last_recovery: Seconds from its last exit to its restart.
        mean_recovery: The mean of those over all its restarts.
        supervisor: The subtree's own snapshot, for a running nested supervisor.
    """

    id: str
    kind: str
    restart: str
    state: ChildState
    incarnation: int
    restarts: int
    uptime: float | None
    next_restart_in: float | None
    last_exit: str | None
    exits_by_kind: dict[str, int] = attrs.field(factory=dict)
    recent_exits: tuple[tuple[float, str], ...] = ()
    last_recovery: float | None = None
    mean_recovery: float | None = None
    supervisor: SupervisorSnapshot | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "id": self.id,
            "kind": self.kind,
            "restart": self.restart,
            "state": self.state.value,
            "incarnation": self.incarnation,
            "restarts": self.restarts,
            "uptime": self.uptime,
            "next_restart_in": self.next_restart_in,
            "last_exit": self.last_exit,
            "exits_by_kind": dict(self.exits_by_kind),
            "recent_exits": [list(item) for item in self.recent_exits],
            "last_recovery": self.last_recovery,
            "mean_recovery": self.mean_recovery,
            "supervisor": None if self.supervisor is None else self.supervisor.to_dict(),
        }


@attrs.frozen(kw_only=True)
class SupervisorSnapshot:
    """A frozen picture of a supervisor and its children, recursively.

    Attributes:
        name: The supervisor's name (a path for subtrees: ``root/db``).
        strategy: ``"one_for_one"``, ``"rest_for_one"``, ``"one_for_all"`` or
            ``"dynamic"``.
        restarts_in_window: Restarts that count toward intensity right now.
        children: The children in start order.
    """

    name: str
    strategy: str
    intensity: int
    period: float
    restarts_in_window: int
    time: float
    children: tuple[ChildSnapshot, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps(snapshot.to_dict())``)."""
        return {
            "name": self.name,
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "restarts_in_window": self.restarts_in_window,
            "time": self.time,
            "children": [child.to_dict() for child in self.children],
        }
