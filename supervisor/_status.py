"""A child's record, and its status: one field, with every transition that changes it.

OTP keeps where a child is in one field of its record (``undefined``, a pid,
or ``restarting``); so does :attr:`Child.status`, a small tagged union:

- :class:`Starting`: its start was called and it has not signalled ready;
- :class:`Running`: it is up (``Starting`` and ``Running`` hold its
  :class:`~supervisor._child.Incarnation`, its "pid");
- :class:`Restarting`: a restart of it is pending, after a backoff delay or as
  a retry through the loop after a failed start; the object itself is the
  token the loop's messages carry, so a stale timer or retry finds a different
  status and does nothing;
- :class:`Unresponsive`: it was told to stop, its shutdown grace is spent
  and its task still runs (it caught the cancellation, or shields itself):
  trio cannot kill a task, so its supervisor stops waiting for it and goes on
  supervising the others. Nothing starts it again while the old incarnation
  lives (two incarnations never run at once); once that ends, it is
  :data:`STOPPED`;
- :data:`STOPPED`: nothing will start it but ``restart_child``.

Only :class:`Child`'s methods assign it; the supervisor's loop
(``_core.Supervisor``) calls them and never writes a child's fields itself.
Each assignment also updates the :class:`Tally` of the :class:`Children` the
child belongs to, so ``count_children`` is O(1).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeAlias

import attrs
import trio

from specs import SUPERVISOR, Backoff, ChildSpec
from specs.policy import ChildView, count_failure

from ._child import Incarnation
from ._reasons import ExitReason
from ._stats import ExitStats


class ChildState(enum.Enum):
    """Where a child is in its life."""

    #: Its start was called; it has not signalled ready yet.
    STARTING = "starting"
    #: It is running.
    RUNNING = "running"
    #: Its restart is pending (a backoff delay, or a retry after a failed start).
    RESTARTING = "restarting"
    #: Told to stop, its grace spent, its task still runs: nothing starts it
    #: again until that task ends.
    UNRESPONSIVE = "unresponsive"
    #: It is not running and nothing will start it but ``restart_child``
    #: (OTP's ``undefined`` pid).
    STOPPED = "stopped"


@attrs.frozen
class Starting:
    """Started, not ready yet."""

    inc: Incarnation
    state: ClassVar[ChildState] = ChildState.STARTING


@attrs.frozen
class Running:
    """Up since it signalled ready."""

    inc: Incarnation
    state: ClassVar[ChildState] = ChildState.RUNNING


@attrs.frozen(eq=False)
class Restarting:
    """A pending restart; its identity is the token (a group restart's children share one).

    Attributes:
        at: When its backoff delay runs out; ``None`` for a retry, which the
            loop carries out as soon as it gets to it.
    """

    at: float | None = None
    inc: ClassVar[None] = None
    state: ClassVar[ChildState] = ChildState.RESTARTING


@attrs.frozen
class Unresponsive:
    """Still running after its stop and its grace; ``stuck`` is the incarnation that lives on.

    Not live for the supervisor (``inc`` is ``None``): it is neither stopped
    again nor waited for, and its slot is not started until ``stuck`` ends.
    """

    stuck: Incarnation
    inc: ClassVar[None] = None
    state: ClassVar[ChildState] = ChildState.UNRESPONSIVE


@attrs.frozen
class Stopped:
    """Not running; use :data:`STOPPED`."""

    inc: ClassVar[None] = None
    state: ClassVar[ChildState] = ChildState.STOPPED


STOPPED = Stopped()

Status: TypeAlias = Starting | Running | Restarting | Unresponsive | Stopped


@attrs.define(eq=False)
class Tally:
    """OTP's counts of a supervisor's children, kept as they change (``count_children``)."""

    specs: int = 0
    running: int = 0
    unresponsive: int = 0
    supervisors: int = 0

    def moved(self, old: ChildState, new: ChildState) -> None:
        """A child's status went from ``old`` to ``new``."""
        if old is new:
            return
        if old is ChildState.RUNNING:
            self.running -= 1
        elif old is ChildState.UNRESPONSIVE:
            self.unresponsive -= 1
        if new is ChildState.RUNNING:
            self.running += 1
        elif new is ChildState.UNRESPONSIVE:
            self.unresponsive += 1

    def joined(self, child: Child, sign: int) -> None:
        """``child`` was added (``sign`` 1) or removed (-1)."""
        self.specs += sign
        if child.spec.kind is SUPERVISOR:
            self.supervisors += sign
        state = child.status.state
        if state is ChildState.RUNNING:
            self.running += sign
        elif state is ChildState.UNRESPONSIVE:
            self.unresponsive += sign


class Children(dict[str, "Child"]):
    """A supervisor's children by id, in start order, with their :class:`Tally`."""

    def __init__(self) -> None:
        super().__init__()
        self.tally = Tally()

    def __setitem__(self, child_id: str, child: Child) -> None:
        if child_id in self:
            del self[child_id]
        super().__setitem__(child_id, child)
        child.tally = self.tally
        self.tally.joined(child, 1)

    def __delitem__(self, child_id: str) -> None:
        child = self[child_id]
        super().__delitem__(child_id)
        self.tally.joined(child, -1)
        child.tally = None

    def after(self, child_id: str) -> list[Child]:
        """``child_id``'s record and those after it, in start order: O(children after it)."""
        tail: list[Child] = []
        for key in reversed(self):
            tail.append(self[key])
            if key == child_id:
                tail.reverse()
                return tail
        raise KeyError(child_id)


@attrs.define(eq=False)
class Child:
    """The supervisor's record of one child, across its incarnations.

    Attributes:
        spec: Its spec (a dynamic supervisor's template, for its children).
        id: Its id (a dynamic child's is generated).
        args: The arguments its ``start`` is called with.
        handshake: Whether it signals ready itself (``task_status``, a subtree).
        status: Where it is: see the module's docstring.
        incarnations: How many times it was started.
        restarts: How many times its supervisor restarted it automatically.
        failures: Its consecutive failures, for the backoff.
        last_exit: Why its last incarnation ended (or failed to start).
        last_run: How long its last incarnation ran.
        stats: Its exit statistics, from its first exit on.
        tally: The counts of the :class:`Children` it is in, if any.
    """

    spec: ChildSpec
    id: str
    args: tuple[Any, ...]
    handshake: bool
    status: Status = STOPPED
    incarnations: int = 0
    restarts: int = 0
    failures: int = 0
    last_exit: ExitReason | None = None
    last_run: float = 0.0
    stats: ExitStats | None = None
    tally: Tally | None = attrs.field(default=None, repr=False)
    #: What runs a subtree, with its ``task_status``, made at its first start;
    #: any other child's ``spec.start`` runs as it is (``_child.Code``).
    runner: Callable[..., Awaitable[object]] | None = attrs.field(default=None, repr=False)

    def _move(self, status: Status) -> None:
        if self.tally is not None:
            self.tally.moved(self.status.state, status.state)
        self.status = status

    @property
    def inc(self) -> Incarnation | None:
        """Its live incarnation (starting or running), if any."""
        return self.status.inc

    def view(self) -> ChildView:
        """What the pure policy sees of it."""
        return ChildView(
            self.id,
            self.spec.restart,
            self.status.inc is not None,
            restarting=isinstance(self.status, Restarting),
            significant=self.spec.significant,
        )

    # ----------------------------------------------------------- transitions

    def begin(
        self, supervisor: str, *, restarted: bool, scope: trio.CancelScope | None = None
    ) -> Incarnation:
        """Not live -> :class:`Starting`: a new incarnation, to be run.

        ``scope``: the soft scope it shares with the one before it, restarted
        in place (``run_incarnation``); else it gets its own.
        """
        self.incarnations += 1
        inc = Incarnation(
            self.id,
            self.incarnations,
            supervisor,
            self.restarts + (1 if restarted else 0),
            self.last_exit,
            soft_scope=scope if scope is not None else trio.CancelScope(shield=True),
        )
        self._move(Starting(inc))
        return inc

    def ready(self, inc: Incarnation, now: float, *, restarted: bool) -> None:
        """:class:`Starting` -> :class:`Running`; an automatic restart is counted."""
        self._move(Running(inc))
        if restarted:
            self.restarts += 1
            if self.stats is not None:
                self.stats.recovered(now)

    def failed_to_start(self, reason: ExitReason, now: float) -> None:
        """:class:`Starting` -> :data:`STOPPED`: its start failed with ``reason``."""
        self._move(STOPPED)
        self._ended(reason, 0.0, now)

    def exited(self, inc: Incarnation, reason: ExitReason, now: float) -> None:
        """:class:`Running` -> :data:`STOPPED`: its run ended on its own; the policy decides."""
        self._move(STOPPED)
        self._ended(reason, now - inc.started_at, now)

    def terminated(self) -> None:
        """Live (or :class:`Unresponsive`, ending at last) -> :data:`STOPPED`: it is stopped."""
        self._move(STOPPED)

    def unresponsive(self, inc: Incarnation) -> None:
        """Live -> :class:`Unresponsive`: ``inc`` outlived its stop request and its grace."""
        self._move(Unresponsive(inc))

    @property
    def stuck(self) -> Incarnation | None:
        """The incarnation that outlived its stop, if it is :class:`Unresponsive`."""
        return self.status.stuck if isinstance(self.status, Unresponsive) else None

    def schedule(self, pending: Restarting) -> None:
        """Not live -> :class:`Restarting`: ``pending`` starts it."""
        self._move(pending)

    def cancel_restart(self) -> None:
        """:class:`Restarting` -> :data:`STOPPED`; any other status stays."""
        if isinstance(self.status, Restarting):
            self._move(STOPPED)

    def count_failure(self, backoff: Backoff | None) -> int:
        """Count a failure toward its backoff (``specs.policy.count_failure``)."""
        self.failures = count_failure(self.failures, last_run=self.last_run, backoff=backoff)
        return self.failures

    def _ended(self, reason: ExitReason, ran: float, now: float) -> None:
        self.last_exit = reason
        self.last_run = ran
        if self.stats is None:
            self.stats = ExitStats()
        self.stats.exit(reason, now, ran)
