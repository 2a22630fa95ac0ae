"""An optional structlog hook: one key/value event per lifecycle step."""

from __future__ import annotations

from typing import Any

import attrs

from ._events import Event, Hook, _report, crash_exception
from ._exceptions import MissingExtra


def structlog_hook(logger: Any = None) -> Hook:
    """A hook that logs each event with structlog (the ``[ops]`` extra).

    Event names are stable and prefixed (``supervisor.child_terminated``);
    the fields are the event's own plus OTP's ``error_context``.

    Args:
        logger: A structlog logger (default: ``structlog.get_logger("supervisor")``).
    """
    with MissingExtra.guard("ops", "supervisor.structlog_hook"):
        import structlog

    log = logger if logger is not None else structlog.get_logger("supervisor")

    def hook(event: Event) -> None:
        level, context, reason = _report(event)
        fields: dict[str, object] = {
            k: (str(v) if not isinstance(v, int | float | str | None) else v)
            for k, v in attrs.asdict(event, recurse=False).items()
        }
        fields["reason"] = reason
        exception = crash_exception(event)
        if exception is not None:  # the crash report's traceback, as logging's exc_info
            fields["exc_info"] = exception
        log.log(level, f"supervisor.{context}", error_context=context, **fields)

    return hook
