"""The exceptions of the ``supervisor`` package: one flat hierarchy.

Each refines the builtin whose meaning it shares; each says when it happens.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._reasons import ExitReason


class Shutdown(Exception):
    """Raised by a child to exit like OTP's ``{shutdown, Reason}``.

    A TRANSIENT child that raises it is not restarted (it stays in the list,
    not running, and ``restart_child`` can start it again); a PERMANENT child
    is restarted as after any exit. A plain ``return`` is OTP's ``normal``.

    Args:
        reason: Why the child shut down; shown in reports.
    """

    def __init__(self, reason: object = None) -> None:
        self.reason = reason
        super().__init__(reason)


class MaxIntensityReached(RuntimeError):
    """A supervisor gave up: more restarts than ``intensity`` within ``period``.

    Raised by ``run_supervisor`` / ``open_supervisor`` after the supervisor
    has stopped all its children in reverse start order. A parent supervisor
    sees it as its child's ``shutdown`` exit (as in OTP): a PERMANENT subtree is
    restarted, a TRANSIENT one stays down.

    Also raised when its ``failure_policy`` escalates a failure
    (``escalated``): it gave up at once, whatever the intensity.

    Attributes:
        supervisor: The name of the supervisor that gave up.
        child: The id of the child whose restart was refused (the offender).
        reason: That child's last exit reason.
        escalated: Whether its failure policy escalated the failure.
    """

    def __init__(
        self, supervisor: str, child: str, reason: ExitReason | None, *, escalated: bool = False
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.reason = reason
        self.escalated = escalated
        why = (
            f"escalates failures of kind {reason.failure_kind!r}"
            if escalated and reason is not None
            else "reached its maximum restart intensity"
        )
        super().__init__(
            f"supervisor {supervisor!r} {why}; offender {child!r} exited with {reason}"
        )


class FailedToStartChild(RuntimeError):
    """A child failed to start: it raised, or returned, before signalling ready.

    During a supervisor's own start this fails the start (the children already
    started are stopped in reverse order first), as OTP's
    ``{shutdown, {failed_to_start_child, Id, Reason}}``. From ``start_child`` or
    ``restart_child`` it is the call's error. The child's own exception is the
    ``__cause__``.

    Attributes:
        supervisor: The supervisor's name.
        child: The id of the child that failed to start.
        error: What the child raised.
    """

    def __init__(self, supervisor: str, child: str, error: BaseException) -> None:
        self.supervisor = supervisor
        self.child = child
        self.error = error
        super().__init__(f"supervisor {supervisor!r} failed to start child {child!r}: {error!r}")


class ChildNotFound(LookupError):
    """The supervisor has no child with that id (OTP's ``{error, not_found}``)."""

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"supervisor {supervisor!r} has no child {child!r}")


class ChildAlreadyStarted(RuntimeError):
    """``start_child`` with the id of a running child (OTP's ``already_started``)."""

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"child {child!r} of supervisor {supervisor!r} is already running")


class ChildAlreadyPresent(RuntimeError):
    """``start_child`` with the id of a child that is known but not running.

    OTP's ``already_present``: use ``restart_child``, or ``delete_child`` first.
    """

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(
            f"child {child!r} of supervisor {supervisor!r} is already present (not running); "
            "use restart_child or delete_child"
        )


class ChildRunning(RuntimeError):
    """``restart_child`` or ``delete_child`` on a running child (OTP's ``running``)."""

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"child {child!r} of supervisor {supervisor!r} is running")


class ChildRestarting(RuntimeError):
    """``restart_child`` or ``delete_child`` on a child whose restart is pending.

    OTP's ``restarting``: the supervisor will start it itself; use
    ``terminate_child`` to stop the pending restart first.
    """

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(
            f"child {child!r} of supervisor {supervisor!r} is restarting; "
            "terminate_child stops the pending restart"
        )


class ChildUnresponsive(RuntimeError):
    """``restart_child`` or ``delete_child`` on a child that outlived its stop.

    It was told to stop, its shutdown grace is spent and its task still runs
    (it caught the cancellation): starting it again would run two
    incarnations at once, and forgetting it would lose a live task. Once its
    task ends it is stopped, and both work.
    """

    def __init__(self, supervisor: str, child: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(
            f"child {child!r} of supervisor {supervisor!r} is unresponsive: told to stop, "
            "it still runs after its shutdown grace; it can be restarted once it ends"
        )


class MaxChildrenReached(RuntimeError):
    """A dynamic supervisor's ``start_child`` beyond its ``max_children``."""

    def __init__(self, supervisor: str, max_children: int) -> None:
        self.supervisor = supervisor
        self.max_children = max_children
        super().__init__(
            f"dynamic supervisor {supervisor!r} already has max_children={max_children} children"
        )


class SupervisorNotRunning(RuntimeError):
    """A handle was used after its supervisor stopped (OTP's ``noproc``)."""

    def __init__(self, supervisor: str) -> None:
        self.supervisor = supervisor
        super().__init__(f"supervisor {supervisor!r} is not running")


#: The modules each of the distribution's extras installs, by import name.
_EXTRA_MODULES: Final[Mapping[str, frozenset[str]]] = {
    "pyrogram": frozenset({"pyrogram", "tgcrypto", "trio_asyncio"}),
    "ops": frozenset({"rich", "hypercorn", "prometheus_client", "structlog"}),
    "testing": frozenset({"hypothesis", "pytest", "pytest_trio"}),
}


class MissingExtra(ImportError):
    """A name was used whose optional dependencies (an extra) are not installed.

    The message names the extra that installs them, e.g.
    ``pip install 'trio-supervision[pyrogram]'``.

    Attributes:
        feature: What was used (``workers.PyrogramClientWorker``, ``--tree``).
        extra: The extra that provides it.
        name: The missing module (as on :class:`ImportError`).
    """

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs {module!r}, which is not installed: "
            f"pip install 'trio-supervision[{extra}]'",
            name=module,
        )

    @classmethod
    @contextmanager
    def guard(cls, extra: str, feature: str) -> Iterator[None]:
        """Turn a missing module of ``extra``, imported in the block, into this error.

        A missing module that is not one of the extra's propagates unchanged:
        it is a different fault than a missing extra.
        """
        try:
            yield
        except ModuleNotFoundError as error:
            module = (error.name or "").partition(".")[0]
            if module not in _EXTRA_MODULES[extra]:
                raise
            raise cls(feature, extra, module) from error
