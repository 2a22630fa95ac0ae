"""The exceptions of the ``workers`` package's mailbox API: one flat hierarchy."""

from __future__ import annotations


class NotRunning(LookupError):
    """No incarnation of the named worker is running (OTP's ``noproc``).

    Raised by ``call``/``cast`` when the name is not registered: the worker
    has not started, is between incarnations, or stayed down.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no running worker named {name!r}")


class CallTimeout(TimeoutError):
    """A ``call`` got no reply within its timeout; a late reply is dropped."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"worker {name!r} did not reply within {timeout}s")


class CalleeExited(RuntimeError):
    """The worker handling (or about to handle) a ``call`` exited first.

    Attributes:
        reason: Why it exited (its failure), or ``None`` if it was stopped.
    """

    def __init__(self, name: str, reason: BaseException | None) -> None:
        self.name = name
        self.reason = reason
        what = "was stopped" if reason is None else f"exited with {reason!r}"
        super().__init__(f"worker {name!r} {what} before replying")


class NameTaken(ValueError):
    """Two running workers tried to register under one name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a running worker is already registered as {name!r}")
