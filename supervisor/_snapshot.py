"""Introspection: frozen, JSON-serialisable views of a running tree, and how they are read.

:func:`which_children`, :func:`count_children` and :func:`snapshot` read a
supervisor's records (``_status.Child``, ``_stats.ExitStats``) without
changing them; the loop (``_core``) never builds a view itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from specs.policy import restarts_in_window

from ._status import ChildState as ChildState
from ._status import Restarting, Running

if TYPE_CHECKING:
    from ._core import Supervisor
    from ._stats import ExitStats
    from ._status import Child


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
    #: Children told to stop whose tasks still run (not in OTP, where a kill
    #: always works): ``ChildState.UNRESPONSIVE``, not counted as active.
    unresponsive: int = 0


@attrs.frozen(kw_only=True)
class KindRecovery:
    """One failure kind's record for one child, in a :class:`RecoverySnapshot`.

    Attributes:
        failures: Failures of this kind.
        recovered: Restarts after one that then ran healthy long enough
            (``specs.policy.healthy_after``).
        not_recovered: Restarts after one that failed again before that.
        actions: What the supervisor did with them, by action
            (``restart``, ``keep``, ``remove``, ``stay_down``, ``escalate``).
    """

    failures: int
    recovered: int
    not_recovered: int
    actions: dict[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "failures": self.failures,
            "recovered": self.recovered,
            "not_recovered": self.not_recovered,
            "actions": dict(self.actions),
        }


@attrs.frozen(kw_only=True)
class RecoverySnapshot(KindRecovery):
    """A child's failures and recoveries: over all kinds, and per failure kind.

    Attributes:
        failures: Its failures (exits of a failure kind; not normal returns).
        recovered: Recoveries that worked, all kinds.
        not_recovered: Recoveries that did not, all kinds.
        actions: What the supervisor did with each of its exits, by action.
        by_kind: The same per failure kind.
        last_failures: The last 100 failures as ``(time, kind, reason)``.
    """

    by_kind: dict[str, KindRecovery] = attrs.field(factory=dict)
    last_failures: tuple[tuple[float, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            **super().to_dict(),
            "by_kind": {kind: item.to_dict() for kind, item in self.by_kind.items()},
            "last_failures": [list(item) for item in self.last_failures],
        }

    def summary(self) -> str:
        """``failures=7 (flood_wait 5, connection 2) recovered 4/6``."""
        kinds = ", ".join(f"{kind} {item.failures}" for kind, item in self.by_kind.items())
        judged = self.recovered + self.not_recovered
        told = f" recovered {self.recovered}/{judged}" if judged else ""
        return f"failures={self.failures} ({kinds}){told}"


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
        recovery: Its failures and recoveries per failure kind (``None``
            until its first exit).
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
    recovery: RecoverySnapshot | None = None
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
            "recovery": None if self.recovery is None else self.recovery.to_dict(),
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


def which_children(sup: Supervisor) -> list[ChildInfo]:
    """Every child of ``sup``, in start order (OTP's ``which_children``)."""
    return [
        ChildInfo(
            id=child.id,
            state=child.status.state,
            kind=child.spec.kind.value,
            incarnation=child.incarnations,
            value=None if child.status.inc is None else child.status.inc.value,
        )
        for child in sup.children.values()
    ]


def count_children(sup: Supervisor) -> ChildCounts:
    """OTP's ``count_children``: O(1), from the counts its children keep (``_status.Tally``)."""
    tally = sup.children.tally
    return ChildCounts(
        specs=tally.specs,
        active=tally.running,
        supervisors=tally.supervisors,
        workers=tally.specs - tally.supervisors,
        unresponsive=tally.unresponsive,
    )


def snapshot(sup: Supervisor) -> SupervisorSnapshot:
    """A frozen, JSON-serialisable picture of ``sup`` and its subtrees."""
    now = trio.current_time()
    children = []
    for child in sup.children.values():
        nested = _nested_core(child)
        children.append(_child_snapshot(child, now, None if nested is None else snapshot(nested)))
    return _supervisor_snapshot(sup, now, children)


async def snapshot_in_steps(sup: Supervisor, *, step: int = 20) -> SupervisorSnapshot:
    """:func:`snapshot`, with a checkpoint every ``step`` children, for a tree of any size.

    One synchronous picture costs ~3 µs per child (60 ms for 20,000, more
    with subtrees and statistics), all of it holding the loop; this one lets
    it restart children in between. Each
    child's entry is taken at once (its own state, at the time its step
    ran), the whole is not one instant: a child that changed meanwhile
    shows its newer state, one added meanwhile is missing, one removed
    meanwhile shows as it was. ``time`` is when the picture began.
    """
    began = trio.current_time()
    children = []
    taken = 0
    for child in list(sup.children.values()):  # the dict may change between steps
        nested = _nested_core(child)
        if nested is not None:
            below = await snapshot_in_steps(nested, step=step)
            children.append(_child_snapshot(child, trio.current_time(), below))
            continue
        children.append(_child_snapshot(child, trio.current_time(), None))
        taken += 1
        if taken % step == 0:
            await trio.lowlevel.checkpoint()
    return _supervisor_snapshot(sup, began, children)


def _supervisor_snapshot(
    sup: Supervisor, now: float, children: list[ChildSnapshot]
) -> SupervisorSnapshot:
    return SupervisorSnapshot(
        name=sup.name,
        strategy="dynamic" if sup.dynamic else sup.strategy.value,
        intensity=sup.spec.intensity,
        period=sup.spec.period,
        restarts_in_window=restarts_in_window(sup.restarts, now, sup.spec.period),
        time=now,
        children=tuple(children),
    )


def _nested_core(child: Child) -> Supervisor | None:
    """The supervisor a child runs: a subtree, or a child that hands over its handle."""
    inc = child.status.inc
    if inc is not None and getattr(type(inc.value), "is_supervisor_handle", False):
        core: Supervisor = inc.value._core
        return core
    return None


def _child_snapshot(child: Child, now: float, nested: SupervisorSnapshot | None) -> ChildSnapshot:
    status, stats = child.status, child.stats
    at = status.at if isinstance(status, Restarting) else None
    uptime = max(0.0, now - status.inc.started_at) if isinstance(status, Running) else None
    return ChildSnapshot(
        id=child.id,
        kind=child.spec.kind.value,
        restart=child.spec.restart.value,
        state=status.state,
        incarnation=child.incarnations,
        restarts=child.restarts,
        uptime=uptime,
        next_restart_in=None if at is None else max(0.0, at - now),
        last_exit=None if child.last_exit is None else str(child.last_exit),
        exits_by_kind={} if stats is None else dict(stats.by_kind),
        recent_exits=() if stats is None else tuple((t, str(r)) for t, r in stats.recent),
        last_recovery=None if stats is None else stats.last_recovery,
        mean_recovery=None if stats is None else stats.mean_recovery,
        recovery=None if stats is None else _recovery(stats, uptime),
        supervisor=nested,
    )


def _recovery(stats: ExitStats, uptime: float | None) -> RecoverySnapshot:
    """The view of a child's recovery statistics; a pending recovery counts once it is judged."""
    recoveries = stats.recovered_by_kind(uptime)
    by_kind = {}
    for kind, item in stats.kinds.items():
        worked, not_worked = recoveries[kind]
        by_kind[kind] = KindRecovery(
            failures=item.failures,
            recovered=worked,
            not_recovered=not_worked,
            actions=dict(item.actions),
        )
    return RecoverySnapshot(
        failures=sum(item.failures for item in by_kind.values()),
        recovered=sum(item.recovered for item in by_kind.values()),
        not_recovered=sum(item.not_recovered for item in by_kind.values()),
        actions=dict(stats.actions),
        by_kind=by_kind,
        last_failures=tuple((t, kind, str(reason)) for t, kind, reason in stats.failures),
    )
