"""An optional structlog hook: one key/value event per lifecycle step."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._events import Event, Hook, _report, crash_exception
from ._exceptions import MissingExtra


def structlog_hook(logger: Any = None) -> Hook:
    """A hook that logs each event with structlog (the ``[ops]`` extra).

    Event names are stable and prefixed (``supervisor.child_terminated``);
    the fields are the event's own plus OTP's ``error_context``: among them
    ``supervisor``, its supervisor's name, and ``path``, where that
    supervisor sits in the tree (``"bridge/accounts/account-2"``), so a
    subtree's or an account's lines can be told apart. An enum field
    is its plain word (``action="restart"``, not ``ExitAction.RESTART``);
    ``time`` is trio's clock (the supervisor's own time, as in its events and
    snapshots) and ``timestamp`` the wall-clock time, ISO 8601 in UTC.

    Args:
        logger: A structlog logger (default: ``structlog.get_logger("supervisor")``).
    """
    with MissingExtra.guard("ops", "supervisor.structlog_hook"):
        import structlog

    log = logger if logger is not None else structlog.get_logger("supervisor")
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")

    def hook(event: Event) -> None:
        level, context, reason = _report(event)
        fields: dict[str, object] = {
            k: _plain(v) for k, v in attrs.asdict(event, recurse=False).items()
        }
        fields["reason"] = reason
        # wall-clock time, for people reading the log beside other logs, stamped by
        # structlog itself: nothing is timed or decided by it (the runtime's is trio's)
        stamp(None, "", fields)
        exception = crash_exception(event)
        if exception is not None:  # the crash report's traceback, as logging's exc_info
            fields["exc_info"] = exception
        log.log(level, f"supervisor.{context}", error_context=context, **fields)

    return hook


def _plain(value: object) -> object:
    """A field as a log pipeline reads it: a number, a word, or text."""
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else value.name.lower()
    if isinstance(value, int | float | str | None):
        return value
    return str(value)
