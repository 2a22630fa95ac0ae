"""Lifecycle events: a frozen record for every step a supervisor takes.

Each maps onto an OTP report (see the README's table): hooks receive them in
the order they happen; the default hook logs them through stdlib ``logging``.

Every event names its supervisor twice: ``supervisor`` is its name in reports,
``path`` where it sits in its tree: the root's name, then the id of each child
down to it (``"bridge/accounts/account-2"``, whatever that supervisor is
called). A subtree's events, and those of a supervisor opened inside a child,
reach the tree's hooks and subscribers with their own path (see
``_stream.py``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import attrs

from specs.policy import ExitAction, ExitKind

from ._reasons import ExitReason

logger = logging.getLogger("supervisor")


@attrs.frozen(kw_only=True)
class ChildStarted:
    """A child signalled ready: at the supervisor's start, or by the API (OTP progress report)."""

    supervisor: str
    path: str
    child: str
    incarnation: int
    time: float


@attrs.frozen(kw_only=True)
class ChildRestarted:
    """A child was started again by its supervisor's restart strategy."""

    supervisor: str
    path: str
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
    path: str
    child: str
    incarnation: int
    reason: ExitReason
    action: ExitAction
    time: float


@attrs.frozen(kw_only=True)
class ChildTerminated:
    """The supervisor stopped a child: shutdown, a group restart, or ``terminate_child``."""

    supervisor: str
    path: str
    child: str
    incarnation: int
    reason: ExitReason
    time: float


@attrs.frozen(kw_only=True)
class RestartScheduled:
    """A child's restart waits ``delay`` seconds (backoff, or its failure's own hint)."""

    supervisor: str
    path: str
    child: str
    delay: float
    failures: int
    time: float


@attrs.frozen(kw_only=True)
class StartFailed:
    """A child raised or returned before signalling ready (OTP's ``start_error``)."""

    supervisor: str
    path: str
    child: str
    error: BaseException = attrs.field(eq=False)
    time: float


@attrs.frozen(kw_only=True)
class ShutdownTimedOut:
    """A child overran its shutdown grace; its cleanup was cut short (OTP's ``shutdown_error``).

    Attributes:
        unresponsive: Its task still runs after its grace and a moment more
            (it caught the cancellation, or shields itself; trio cannot kill
            a task): its supervisor stops waiting and goes on, the child is
            ``ChildState.UNRESPONSIVE`` until its task ends, and then a
            :class:`ChildTerminated` records that end.
    """

    supervisor: str
    path: str
    child: str
    grace: float
    unresponsive: bool = False
    time: float


@attrs.frozen(kw_only=True)
class GaveUp:
    """The supervisor reached its maximum restart intensity and stops (OTP's ``shutdown`` report).

    Attributes:
        child: The offender: the child whose restart was refused.
        reason: The offender's exit reason.
    """

    supervisor: str
    path: str
    child: str
    reason: ExitReason | None
    intensity: int
    period: float
    time: float


@attrs.frozen(kw_only=True)
class KeyAcquired:
    """A keyed pool's member took a key (created its owner key in etcd; embedded: at once).

    ``supervisor`` is the pool's name, ``child`` the key. Its child starts next.

    Attributes:
        member: The member that owns it now.
        token: Its fencing token (see ``supervisor.cluster.current_claim``).
    """

    supervisor: str
    path: str
    child: str
    member: str
    token: int
    time: float


@attrs.frozen(kw_only=True)
class KeyReleased:
    """A keyed pool's member handed a key over: its child stopped, then its owner key went.

    It happens when placement moves the key (a member joined or left) and when
    the member leaves; the next owner can take the key only after this.
    """

    supervisor: str
    path: str
    child: str
    member: str
    token: int
    time: float


@attrs.frozen(kw_only=True)
class KeyLost:
    """A keyed pool's member stopped a key's child without handing it over.

    Attributes:
        cause: ``"deadline"``: no lease renewal came back in time, the child
            stopped before the lease could expire (the member still owns the
            key and starts it again once a renewal succeeds); ``"lease"``:
            etcd no longer had the lease, the key is free for another member.
    """

    supervisor: str
    path: str
    child: str
    member: str
    token: int
    cause: str
    time: float


@attrs.frozen(kw_only=True)
class MemberJoined:
    """A member registered in a keyed pool's cluster (``child``: its id; ``member``: who saw it)."""

    supervisor: str
    path: str
    child: str
    member: str
    time: float


@attrs.frozen(kw_only=True)
class MemberLeft:
    """A member left a keyed pool's cluster or its lease expired (``child`` is its id)."""

    supervisor: str
    path: str
    child: str
    member: str
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
    | KeyAcquired
    | KeyReleased
    | KeyLost
    | MemberJoined
    | MemberLeft
)
Hook: TypeAlias = Callable[[Event], None]


@attrs.frozen(kw_only=True)
class EventsDropped:
    """A subscriber fell behind: this many events were not delivered to it.

    Only a subscription's stream carries it (``handle.subscribe()``), in the
    place of the events it stands for, as soon as its buffer has room again;
    the supervisor itself never waits for a subscriber.

    Attributes:
        count: How many events were dropped in a row.
        first_time: The first dropped event's ``time``.
        last_time: The last dropped event's ``time``.
    """

    count: int
    first_time: float
    last_time: float


#: What a subscription's stream yields: the events, and the records of those it missed.
StreamEvent: TypeAlias = Event | EventsDropped


#: An event no hook or subscriber saw, kept unbuilt: its class, then its
#: fields after ``supervisor`` and ``path``, in their order (see :func:`build`).
Unbuilt: TypeAlias = tuple[Any, ...]


def build(supervisor: str, path: str, unbuilt: Unbuilt) -> Event:
    """The event an :data:`Unbuilt` record stands for, of ``supervisor`` at ``path``."""
    kind, *values = unbuilt
    names = (field.name for field in attrs.fields(kind))
    event: Event = kind(**dict(zip(names, (supervisor, path, *values), strict=True)))
    return event


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
        case ShutdownTimedOut(grace=grace, unresponsive=True):
            return (
                logging.ERROR,
                "shutdown_error",
                f"unresponsive: still running after its {grace}s grace (it caught the "
                "cancellation); its supervisor goes on without it",
            )
        case ShutdownTimedOut(grace=grace):
            return logging.ERROR, "shutdown_error", f"killed after {grace}s grace"
        case GaveUp():
            return logging.ERROR, "shutdown", "reached_max_restart_intensity"
        case KeyAcquired(member=member, token=token):
            return logging.INFO, "key_acquired", f"owned by {member} (token {token})"
        case KeyReleased(member=member):
            return logging.INFO, "key_released", f"handed over by {member}"
        case KeyLost(member=member, cause=cause):
            return logging.WARNING, "key_lost", f"stopped on {member} ({cause})"
        case MemberJoined(member=member):
            return logging.INFO, "member_joined", f"seen by {member}"
        case MemberLeft(member=member):
            return logging.INFO, "member_left", f"seen by {member}"


def crash_exception(event: Event) -> BaseException | None:
    """The exception of an abnormal exit or a failed start, for a crash report's traceback.

    Its frames' locals are released (``release_frames``), not its traceback:
    it formats with file, line and code, as the exception raised it.
    """
    match event:
        case StartFailed(error=error):
            return error
        case ChildExited(reason=reason) | ChildTerminated(reason=reason):
            return reason.exception if reason.kind is ExitKind.ABNORMAL else None
    return None


def logging_hook(event: Event) -> None:
    """Log an event through the ``supervisor`` logger, with OTP's report fields.

    The record carries ``supervisor``, ``errorContext``, ``reason`` and
    ``offender`` in ``extra`` (as attributes ``supervisor``,
    ``error_context``, ``reason``, ``offender``), and the supervisor's
    ``path`` in its tree. Failures are ERROR,
    progress is INFO, so Python's default (WARNING and above to stderr) shows
    only what went wrong. A crash report (an abnormal exit, a failed start)
    carries the exception with its traceback as ``exc_info``.
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
        exc_info=crash_exception(event),
        extra={
            "supervisor": event.supervisor,
            "path": event.path,
            "error_context": context,
            "reason": reason,
            "offender": event.child,
        },
    )


@attrs.define(eq=False)
class ContainedHook:
    """A hook whose failure never reaches the supervisor: reported once, then counted.

    An exception from a hook (or from a ``logging.Handler`` under
    :func:`logging_hook`) must not end the tree. Its first failure is logged
    at ERROR with its traceback; if that record fails too (the failing
    handler is on the ``supervisor`` logger), it goes to ``sys.stderr``
    instead. Later failures are only counted. ``KeyboardInterrupt`` and
    ``SystemExit`` propagate.

    Attributes:
        hook: The hook it calls.
        failures: How many events it failed on.
    """

    hook: Hook
    failures: int = 0

    def __call__(self, event: Event) -> None:
        try:
            self.hook(event)
        except Exception as error:
            self.failures += 1
            if self.failures == 1:
                _report_hook_failure(self.hook, event, error)


def contain(
    hooks: Iterable[Hook], inherited: tuple[ContainedHook, ...] = ()
) -> tuple[ContainedHook, ...]:
    """``inherited``, then each of ``hooks`` not among them, each contained once.

    A supervisor inside a tree calls its tree's hooks (already contained:
    one report per hook for the whole tree) and its own; a hook given to
    both is called once per event, not twice.
    """
    known = {id(h) for h in inherited} | {id(h.hook) for h in inherited}
    own = tuple(
        h if isinstance(h, ContainedHook) else ContainedHook(h) for h in hooks if id(h) not in known
    )
    return inherited + own


def _report_hook_failure(hook: Hook, event: Event, error: Exception) -> None:
    message = (
        f"supervisor {event.supervisor!r}: event hook {hook!r} failed on "
        f"{type(event).__name__}; reported once, the tree goes on"
    )
    try:
        logger.error("%s", message, exc_info=error)
    except Exception:
        text = "".join(traceback.format_exception(error))
        with contextlib.suppress(Exception):  # a closed stderr must not end the tree either
            print(f"{message}:\n{text}", file=sys.stderr, end="", flush=True)
