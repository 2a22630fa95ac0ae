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

from collections import Counter, deque

import attrs

from specs.policy import ExitAction

from ._reasons import ExitReason

#: How many recent exits each child's statistics keep.
RECENT_EXITS = 10
#: How many recent failures (with their time and kind) each child's statistics keep.
RECENT_FAILURES = 100


@attrs.define(eq=False)
class KindStats:
    """One failure kind's count for one child.

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
    actions: Counter[str] = attrs.Factory(Counter)


@attrs.define(eq=False)
class ExitStats:
    """How often and how a child exited, how it recovered, and its failure budgets.

    Attributes:
        by_kind: Exits counted by exception class name (or
            ``normal``/``shutdown``).
        recent: The last :data:`RECENT_EXITS` exits, as ``(time, reason)``.
        down_since: When it last exited, until it is restarted.
        last_recovery: Seconds from its last exit to its restart.
        recovery_total: The sum of those over all its restarts.
        recoveries: How many restarts that sum covers.
        kinds: Failures, recoveries and actions per failure kind.
        actions: What the supervisor did with each of its exits, by action.
        failures: The last :data:`RECENT_FAILURES` failures, as ``(time,
            failure kind, reason)``.
        budgets: The policy's state: each kind's failures still in its
            budget's window (``specs.policy.judge_failure``).
        pending: The kind of the failure whose restart is not judged yet,
            and how long the restarted child must run for it to count as
            recovered.
    """

    by_kind: Counter[str] = attrs.Factory(Counter)
    recent: deque[tuple[float, ExitReason]] = attrs.Factory(lambda: deque(maxlen=RECENT_EXITS))
    down_since: float | None = None
    last_recovery: float | None = None
    recovery_total: float = 0.0
    recoveries: int = 0
    kinds: dict[str, KindStats] = attrs.Factory(dict)
    actions: Counter[str] = attrs.Factory(Counter)
    failures: deque[tuple[float, str, ExitReason]] = attrs.Factory(
        lambda: deque(maxlen=RECENT_FAILURES)
    )
    budgets: dict[str, tuple[float, ...]] = attrs.Factory(dict)
    pending: tuple[str, float] | None = None
    _last_kind: str | None = None

    def exit(self, reason: ExitReason, now: float, ran: float = 0.0) -> None:
        """Count an exit (and a failure by its kind), and judge the recovery it ends."""
        kind = type(reason.exception).__name__ if reason.exception is not None else str(reason)
        self.by_kind[kind] += 1
        # the reason's frames are released (release_frames): keeping it is cheap
        self.recent.append((now, reason))
        self.down_since = now
        if self.pending is not None:
            pending, healthy_after = self.pending
            self.pending = None
            if ran >= healthy_after:
                self.kinds[pending].recovered += 1
            else:
                self.kinds[pending].not_recovered += 1
        failure = reason.failure_kind
        self._last_kind = failure
        if failure is not None:
            stats = self.kinds.get(failure)
            if stats is None:
                stats = self.kinds[failure] = KindStats()
            stats.failures += 1
            self.failures.append((now, failure, reason))

    def acted(self, action: ExitAction, *, healthy_after: float) -> None:
        """Count what the supervisor did with the exit just recorded.

        Args:
            action: What it did.
            healthy_after: How long a restarted child must run for the
                recovery to count as one that worked.
        """
        self.actions[action.value] += 1
        kind = self._last_kind
        if kind is None:
            return
        self.kinds[kind].actions[action.value] += 1
        if action is ExitAction.RESTART:
            self.pending = (kind, healthy_after)

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
        return {
            kind: (item.recovered + (1 if settled == (kind, True) else 0), item.not_recovered)
            for kind, item in self.kinds.items()
        }

    def settled(self, uptime: float | None) -> tuple[str, bool] | None:
        """The pending recovery as judged now, for a view: its kind, and whether it worked.

        ``None`` while it cannot be told yet: the restarted child is up
        (``uptime`` seconds) but not for long enough.
        """
        if self.pending is None:
            return None
        kind, healthy_after = self.pending
        if uptime is not None and uptime >= healthy_after:
            return kind, True
        return None
