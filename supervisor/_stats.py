"""A child's exit and recovery statistics: what ``snapshot()`` reports beyond its status.

Kept apart from the loop: the supervisor only records (:meth:`ExitStats.exit`,
:meth:`ExitStats.acted`, :meth:`ExitStats.recovered`); :mod:`supervisor._snapshot`
reads. A child has statistics from its first exit on: most children never
exit, and there can be many children, so an idle child pays nothing.

A recovery is the restart after a failure: it worked if the restarted child
then ran healthy for ``specs.policy.healthy_after`` seconds, and it did not if
it failed again (or failed to start) before that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from specs.policy import ExitAction

from ._reasons import ExitReason

#: How many recent exits each child's statistics keep.
RECENT_EXITS = 10
#: How many recent failures (with their time and kind) each child's statistics keep.
RECENT_FAILURES = 100
# between a failure kind and an action in a key: no kind holds it (kinds are printable)
_SEP = "\n"
# the prefixes of the keys in ``ExitStats._counts``: one table each (none is a
# prefix of another; a kind's name may hold anything but ``_SEP``)
_BY_KIND = "k\n"
_ACTION = "a\n"
_FAILED = "f\n"
_RECOVERED = "r\n"
_NOT_RECOVERED = "n\n"
_KIND_ACTION = "x\n"
# no failure policy judged one yet: one empty mapping shared, never written
_NO_BUDGETS: Mapping[str, tuple[float, ...]] = MappingProxyType({})
#: One exit: when, its reason's text, its failure kind (``None``: no failure).
_Record = tuple[float, str, str | None]


@attrs.frozen
class KindStats:
    """One failure kind's count for one child (a view: :attr:`ExitStats.kinds`).

    Attributes:
        failures: Failures of this kind.
        recovered: Restarts after one that ran healthy long enough.
        not_recovered: Restarts after one that failed again before that.
        actions: What the supervisor did with them, by action (``restart``,
            ``keep``, ``remove``, ``stay_down``, ``escalate``).
    """

    failures: int = 0
    recovered: int = 0
    not_recovered: int = 0
    actions: dict[str, int] = attrs.Factory(dict)


@attrs.define(eq=False)
class ExitStats:
    """How often and how a child exited, how it recovered, and its failure budgets.

    Made at a child's first exit, and kept small: there can be thousands of
    children failing at once, and every object a restart leaves behind is
    one more for the garbage collector to walk. The counts are in one
    plain ``str -> int`` dict (which the collector does not track; but each
    dict made brings its next run nearer, so not one per table), and the
    exits are one ``(time, text, failure kind)`` record each, kept as text:
    no exception, traceback or frame outlives its exit here (the child's
    ``last_exit`` and the event history keep the latest), and a record of
    atoms is one the collector soon stops tracking (a first failure is
    three fields, no record). They are in one deque of the last failures
    while every exit was one (:attr:`recent` reads its end), in a second of
    the last exits from the first exit that is no failure on.

    Attributes:
        down_since: When it last exited, until it is restarted.
        last_recovery: Seconds from its last exit to its restart.
        recovery_total: The sum of those over all its restarts.
        recoveries: How many restarts that sum covers.
        budgets: The policy's state: each kind's failures still in its
            budget's window (``specs.policy.judge_failure``).
        pending: The kind of the failure whose restart is not judged yet
            (``None`` if none), and :attr:`pending_healthy_after`: how long
            the restarted child must run for it to count as recovered.
    """

    down_since: float | None = None
    last_recovery: float | None = None
    recovery_total: float = 0.0
    recoveries: int = 0
    budgets: Mapping[str, tuple[float, ...]] = _NO_BUDGETS
    pending: str | None = None
    pending_healthy_after: float = 0.0
    # every count in one flat dict, each key a prefix and its name: exits by
    # class name (``_BY_KIND``), actions (``_ACTION``), and per failure kind
    # its failures, recoveries that worked and did not, and its actions by
    # ``kind + _SEP + action``: one object per child, not one per table
    _counts: dict[str, int] = attrs.Factory(dict)
    # the last RECENT_FAILURES failures as ``(time, text, kind)``: the first in
    # three fields (most children fail once, if ever: no record is made for
    # it), a deque of records from the second on
    _first_at: float | None = None
    _first_text: str = ""
    _first_kind: str = ""
    _failures: deque[_Record] | None = None
    # the last RECENT_EXITS exits: made at the first exit that is no failure
    _recent: deque[_Record] | None = None
    _last_kind: str | None = None

    def _table(self, prefix: str) -> dict[str, int]:
        """The counts under ``prefix``, by name, in the order they were first counted."""
        start = len(prefix)
        return {key[start:]: n for key, n in self._counts.items() if key.startswith(prefix)}

    @property
    def by_kind(self) -> dict[str, int]:
        """Exits counted by exception class name (or ``normal``/``shutdown``)."""
        return self._table(_BY_KIND)

    @property
    def actions(self) -> dict[str, int]:
        """What the supervisor did with each of its exits, by action."""
        return self._table(_ACTION)

    @property
    def kinds(self) -> dict[str, KindStats]:
        """Failures, recoveries and actions per failure kind, in first-failure order."""
        actions: dict[str, dict[str, int]] = {}
        for key, count in self._table(_KIND_ACTION).items():
            kind, action = key.split(_SEP)
            actions.setdefault(kind, {})[action] = count
        recovered = self._table(_RECOVERED)
        not_recovered = self._table(_NOT_RECOVERED)
        return {
            kind: KindStats(
                failures,
                recovered.get(kind, 0),
                not_recovered.get(kind, 0),
                actions.get(kind, {}),
            )
            for kind, failures in self._table(_FAILED).items()
        }

    def _failure_records(self) -> deque[_Record] | tuple[_Record, ...]:
        if self._failures is not None:
            return self._failures
        if self._first_at is None:
            return ()
        return ((self._first_at, self._first_text, self._first_kind),)

    @property
    def recent(self) -> tuple[tuple[float, str], ...]:
        """The last :data:`RECENT_EXITS` exits, as ``(time, reason's text)``, oldest first."""
        records = self._recent if self._recent is not None else self._failure_records()
        return tuple((t, text) for t, text, _ in records)[-RECENT_EXITS:]

    @property
    def failures(self) -> tuple[tuple[float, str, str], ...]:
        """The last :data:`RECENT_FAILURES` failures, as ``(time, failure kind, reason's text)``."""
        return tuple((t, kind or "", text) for t, text, kind in self._failure_records())

    def exit(self, reason: ExitReason, now: float, ran: float = 0.0) -> None:
        """Count an exit (and a failure by its kind), and judge the recovery it ends."""
        # counted inline: this runs at every exit
        counts = self._counts
        text = str(reason)
        key = _BY_KIND + (type(reason.exception).__name__ if reason.exception is not None else text)
        counts[key] = counts.get(key, 0) + 1
        failure = reason.failure_kind
        self.down_since = now
        pending = self.pending
        if pending is not None:
            self.pending = None
            key = (_RECOVERED if ran >= self.pending_healthy_after else _NOT_RECOVERED) + pending
            counts[key] = counts.get(key, 0) + 1
        self._last_kind = failure
        if failure is not None:
            key = _FAILED + failure
            counts[key] = counts.get(key, 0) + 1
            failures = self._failures
            if failures is not None:
                failures.append((now, text, failure))
            elif self._first_at is None:
                self._first_at, self._first_text, self._first_kind = now, text, failure
            else:
                records = (*self._failure_records(), (now, text, failure))
                self._failures = deque(records, maxlen=RECENT_FAILURES)
            if self._recent is not None:
                self._recent.append((now, text, failure))
            return
        if self._recent is None:  # until now, the last failures were the last exits
            self._recent = deque(self._failure_records(), maxlen=RECENT_EXITS)
        self._recent.append((now, text, failure))

    def acted(self, action: ExitAction, *, healthy_after: float) -> None:
        """Count what the supervisor did with the exit just recorded.

        Args:
            action: What it did.
            healthy_after: How long a restarted child must run for the
                recovery to count as one that worked.
        """
        counts = self._counts
        name = action.value
        key = _ACTION + name
        counts[key] = counts.get(key, 0) + 1
        kind = self._last_kind
        if kind is None:
            return
        key = _KIND_ACTION + kind + _SEP + name
        counts[key] = counts.get(key, 0) + 1
        if action is ExitAction.RESTART:
            self.pending = kind
            self.pending_healthy_after = healthy_after

    def recovered(self, now: float) -> None:
        """A restart after an exit: remember how long the child was down."""
        if self.down_since is None:
            return
        self.last_recovery = now - self.down_since
        self.recovery_total += self.last_recovery
        self.recoveries += 1
        self.down_since = None

    @property
    def mean_recovery(self) -> float | None:
        """The mean time from an exit to its restart, if it was ever restarted."""
        return self.recovery_total / self.recoveries if self.recoveries else None

    def recovered_by_kind(self, uptime: float | None) -> dict[str, tuple[int, int]]:
        """Recoveries per failure kind as ``(worked, did not)``, the pending one once judged.

        ``uptime``: how long the restarted child has run, if it runs (see :meth:`settled`).
        """
        settled = self.settled(uptime)
        recovered = self._table(_RECOVERED)
        not_recovered = self._table(_NOT_RECOVERED)
        return {
            kind: (
                recovered.get(kind, 0) + (1 if settled == (kind, True) else 0),
                not_recovered.get(kind, 0),
            )
            for kind in self._table(_FAILED)
        }

    def settled(self, uptime: float | None) -> tuple[str, bool] | None:
        """The pending recovery as judged now, for a view: its kind, and whether it worked.

        ``None`` while it cannot be told yet: the restarted child is up
        (``uptime`` seconds) but not for long enough.
        """
        if self.pending is None:
            return None
        if uptime is not None and uptime >= self.pending_healthy_after:
            return self.pending, True
        return None
