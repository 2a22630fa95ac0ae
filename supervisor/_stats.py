"""A child's exit statistics: what ``snapshot()`` reports beyond its status.

Kept apart from the loop: the supervisor only records (:meth:`ExitStats.exit`,
:meth:`ExitStats.recovered`); :mod:`supervisor._snapshot` reads.
"""

from __future__ import annotations

from collections import Counter, deque

import attrs

from ._reasons import ExitReason

#: How many recent exits each child's statistics keep.
RECENT_EXITS = 10


@attrs.define(eq=False)
class ExitStats:
    """How often and how a child exited, and how long it took to come back.

    A child has one from its first exit on: most children never exit, and
    there can be many children.

    Attributes:
        by_kind: Exits counted by failure kind (the exception's class name,
            or ``normal``/``shutdown``).
        recent: The last :data:`RECENT_EXITS` exits, as ``(time, reason)``.
        down_since: When it last exited, until it is restarted.
        last_recovery: Seconds from its last exit to its restart.
        recovery_total: The sum of those over all its restarts.
        recoveries: How many restarts that sum covers.
    """

    by_kind: Counter[str] = attrs.Factory(Counter)
    recent: deque[tuple[float, ExitReason]] = attrs.Factory(lambda: deque(maxlen=RECENT_EXITS))
    down_since: float | None = None
    last_recovery: float | None = None
    recovery_total: float = 0.0
    recoveries: int = 0

    def exit(self, reason: ExitReason, now: float) -> None:
        """Count an exit by kind and keep it among the recent ones."""
        kind = type(reason.exception).__name__ if reason.exception is not None else str(reason)
        self.by_kind[kind] += 1
        # the reason's frames are released (release_frames): keeping it is cheap
        self.recent.append((now, reason))
        self.down_since = now

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
