"""Exit reasons: how a child's run ended, as a typed value.

The one classification step of the runtime: :meth:`ExitReason.of` turns a
child's outcome (an exception, or none) into the reason its supervisor's
policy reads. A worker's own classifier (``workers.Classifier``) runs before,
inside the worker: it turns library exceptions into typed failures, which
declare here whether they are a normal exit and what delay they ask for.
"""

from __future__ import annotations

import math
import traceback

import attrs

from specs.policy import ExitKind

from ._exceptions import MaxIntensityReached, Shutdown


@attrs.frozen
class ExitReason:
    """Why a child's run ended.

    Attributes:
        kind: ``NORMAL`` (it returned), ``SHUTDOWN`` (it raised
            :class:`~supervisor.Shutdown`, or a subtree gave up or shut itself
            down) or ``ABNORMAL`` (any other exception).
        exception: What it raised, if anything.
        restart_delay: A delay the failure asks for before the next restart
            (a FloodWait's seconds); it wins over the supervisor's backoff.
    """

    kind: ExitKind
    exception: BaseException | None = attrs.field(default=None, eq=False)
    restart_delay: float | None = None

    def __str__(self) -> str:
        if self.exception is None:
            return self.kind.value
        if isinstance(self.exception, Shutdown):
            if self.exception.reason is None:
                return "shutdown"
            return f"shutdown: {self.exception.reason!r}"
        return repr(self.exception)

    @classmethod
    def of(cls, exception: BaseException | None) -> ExitReason:
        """The reason a child's outcome means: ``None`` is a normal exit.

        A failure may declare itself: an exception with a boolean attribute
        ``supervisor_normal_exit`` set is a ``SHUTDOWN`` exit when true (a
        TRANSIENT child stays down, like OTP's ``{shutdown, Reason}``), and
        one with a number ``supervisor_restart_delay`` asks for that delay.
        :class:`~supervisor.Shutdown` and a subtree's
        :class:`~supervisor.MaxIntensityReached` are ``SHUTDOWN`` exits too.
        """
        if exception is None:
            return NORMAL_EXIT
        delay = getattr(exception, "supervisor_restart_delay", None)
        if (
            not isinstance(delay, int | float)
            or isinstance(delay, bool)
            or not 0 <= delay < math.inf
        ):
            delay = None
        if (
            isinstance(exception, Shutdown | MaxIntensityReached)
            or getattr(exception, "supervisor_normal_exit", False) is True
        ):
            return cls(ExitKind.SHUTDOWN, exception, delay)
        return cls(ExitKind.ABNORMAL, exception, delay)


NORMAL_EXIT = ExitReason(ExitKind.NORMAL)
STOPPED_EXIT = ExitReason(ExitKind.SHUTDOWN)


def release_frames(exception: BaseException | None) -> None:
    """Drop the local variables of the finished frames an exception's traceback holds.

    A child's exit reason is kept (``last_exit``, the next incarnation's
    context, the event history). Its traceback's frames would keep the
    crashed incarnation's locals alive, among them its own context with the
    exit before it: a chain through every incarnation a child ever had. The
    traceback still formats (code and line numbers stay); only locals go.
    """
    seen: set[int] = set()
    stack = [exception]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend((current.__cause__, current.__context__))
