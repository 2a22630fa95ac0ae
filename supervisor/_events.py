"""Lifecycle events: a frozen record for every step a supervisor takes.

Each maps onto an OTP report (see the README's table): hooks receive them in
the order they happen; the default hook logs them through stdlib ``logging``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

import attrs

from specs.policy import ExitAction, ExitKind

from ._reasons import ExitReason

logger = logging.getLogger("supervisor")


@attrs.frozen(kw_only=True)
class ChildStarted:
    """A child signalled ready: at the supervisor's start, or by the API (OTP progress report)."""

    supervisor: str
    child: str
    incarnation: int
    time: float


@attrs.frozen(kw_only=True)
class ChildRestarted:
    """A child was started again by its supervisor's restart strategy."""

    supervisor: str
    child: str
    incarnation: int
    time: float


@attrs.frozen(kw_only=True)
class ChildExited:
    """A child's run ended on its own (OTP's ``child_terminated`` when abnormal).

    Attributes:
        action: What the supervisor does about it: restart, keep (transient,
            normal exit) or remove (temporary).
    """

    supervisor: str
    child: str
    incarnation: int
    reason: ExitReason
    action: ExitAction
    time: float


@attrs.frozen(kw_only=True)
class ChildTerminated:
    """The supervisor stopped a child: shutdown, a group restart, or ``terminate_child``."""

    supervisor: str
    child: str
    incarnation: int
    reason: ExitReason
    time: float


@attrs.frozen(kw_only=True)
class RestartScheduled:
    """A child's restart waits ``delay`` seconds (backoff, or its failure's own hint)."""

    supervisor: str
    child: str
    delay: float
    failures: int
    time: float


@attrs.frozen(kw_only=True)
class StartFailed:
    """A child raised or returned before signalling ready (OTP's ``start_error``)."""

    supervisor: str
    child: str
    error: BaseException = attrs.field(eq=False)
    time: float


@attrs.frozen(kw_only=True)
class ShutdownTimedOut:
    """A child overran its shutdown grace; its cleanup was cut short (OTP's ``shutdown_error``)."""

    supervisor: str
    child: str
    grace: float
    time: float


@attrs.frozen(kw_only=True)
class GaveUp:
    """The supervisor reached its maximum restart intensity and stops (OTP's ``shutdown`` report).

    Attributes:
        child: The offender: the child whose restart was refused.
        reason: The offender's exit reason.
    """

    supervisor: str
    child: str
    reason: ExitReason | None
    intensity: int
    period: float
    time: float


Event: TypeAlias = (
    ChildStarted
    | ChildRestarted
    | ChildExited
    | ChildTerminated
    | RestartScheduled
    | StartFailed
    | ShutdownTimedOut
    | GaveUp
)
Hook: TypeAlias = Callable[[Event], None]


def _report(event: Event) -> tuple[int, str, str]:
    """The level, OTP errorContext and reason text of an event."""
    match event:
        case ChildStarted() | ChildRestarted():
            return logging.INFO, "progress", "started"
        case ChildExited(reason=reason, action=action):
            if action is ExitAction.RESTART or reason.kind is ExitKind.ABNORMAL:
                return logging.ERROR, "child_terminated", str(reason)
            return logging.INFO, "child_exited", str(reason)
        case ChildTerminated(reason=reason):
            return logging.INFO, "child_stopped", str(reason)
        case RestartScheduled(delay=delay):
            return logging.INFO, "restart_scheduled", f"restart in {delay:.3f}s"
        case StartFailed(error=error):
            return logging.ERROR, "start_error", repr(error)
        case ShutdownTimedOut(grace=grace):
            return logging.ERROR, "shutdown_error", f"killed after {grace}s grace"
        case GaveUp():
            return logging.ERROR, "shutdown", "reached_max_restart_intensity"


def logging_hook(event: Event) -> None:
    """Log an event through the ``supervisor`` logger, with OTP's report fields.

    The record carries ``supervisor``, ``errorContext``, ``reason`` and
    ``offender`` in ``extra`` (as attributes ``supervisor``,
    ``error_context``, ``reason``, ``offender``). Failures are ERROR,
    progress is INFO, so Python's default (WARNING and above to stderr) shows
    only what went wrong.
    """
    level, context, reason = _report(event)
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "supervisor=%s errorContext=%s reason=%s offender=%s",
        event.supervisor,
        context,
        reason,
        event.child,
        extra={
            "supervisor": event.supervisor,
            "error_context": context,
            "reason": reason,
            "offender": event.child,
        },
    )
