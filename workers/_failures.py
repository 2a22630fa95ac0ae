"""Typed failures: the reasons a worker exits with, as frozen values.

A worker raises one (or the classifier turns a library's exception into one);
its supervisor receives it in ``ChildExited.reason.exception``. Each says
whether it is a normal exit (``supervisor_normal_exit``: a TRANSIENT child
stays down, as after OTP's ``{shutdown, Reason}``) and may ask for a restart
delay (``supervisor_restart_delay``: a FloodWait's seconds win over backoff),
and declares its kind (``supervisor_failure_kind``), which a supervisor's
``failure_policy`` decides on (``specs.FIELD_REPORT_POLICY``: the README's
failure table).
"""

from __future__ import annotations

from typing import ClassVar

import attrs


class Failure(Exception):
    """Base of every typed failure: a worker's reason to exit, not a bug."""

    #: Whether this exit is normal: a TRANSIENT child is not restarted.
    supervisor_normal_exit: ClassVar[bool] = False
    #: The failure kind a supervisor's failure policy decides on.
    supervisor_failure_kind: ClassVar[str] = "unknown"

    @property
    def supervisor_restart_delay(self) -> float | None:
        """Seconds to wait before the restart, when the failure knows (else backoff)."""
        return None

    #: What the default recovery does about it (for tables and logs).
    recovery: ClassVar[str] = "restart with backoff"

    def __str__(self) -> str:
        return repr(self)


@attrs.frozen(auto_exc=True)
class ConnectionLost(Failure, ConnectionError):
    """The connection closed: a close frame (with its code) or a reset/EOF (code 1006)."""

    code: int | None = None
    reason: str = ""
    recovery: ClassVar[str] = "reconnect with backoff"
    supervisor_failure_kind: ClassVar[str] = "connection"


@attrs.frozen(auto_exc=True)
class HeartbeatTimeout(Failure, TimeoutError):
    """The peer stopped answering: no pong / probe reply within ``after`` seconds."""

    after: float = 0.0
    recovery: ClassVar[str] = "reconnect with backoff"
    supervisor_failure_kind: ClassVar[str] = "connection"


@attrs.frozen(auto_exc=True)
class FloodWait(Failure):
    """The server asks us to wait ``seconds`` before trying again (Telegram 420)."""

    seconds: float = 0.0
    recovery: ClassVar[str] = "restart after exactly `seconds`"
    supervisor_failure_kind: ClassVar[str] = "flood_wait"

    @property
    def supervisor_restart_delay(self) -> float | None:
        """The server's wait."""
        return float(self.seconds)


@attrs.frozen(auto_exc=True)
class RateLimited(Failure):
    """HTTP 429: wait ``retry_after`` seconds if the server said, else back off."""

    retry_after: float | None = None
    recovery: ClassVar[str] = "restart after `retry_after` (or backoff)"
    supervisor_failure_kind: ClassVar[str] = "rate_limited"

    @property
    def supervisor_restart_delay(self) -> float | None:
        """The server's Retry-After, if it gave one."""
        return None if self.retry_after is None else float(self.retry_after)


@attrs.frozen(auto_exc=True)
class ProxyFailed(Failure, ConnectionError):
    """The proxy is dead or refused the tunnel; the next incarnation should rotate."""

    proxy: str | None = None
    cause: str = ""
    recovery: ClassVar[str] = "restart with the next proxy"
    supervisor_failure_kind: ClassVar[str] = "proxy"


@attrs.frozen(auto_exc=True)
class PoolExhausted(Failure, TimeoutError):
    """No connection could be had from the pool in time (httpx ``PoolTimeout``)."""

    detail: str = ""
    recovery: ClassVar[str] = "restart with a fresh client (a fresh pool)"
    supervisor_failure_kind: ClassVar[str] = "connection"


@attrs.frozen(auto_exc=True)
class ServerError(Failure, ConnectionError):
    """The server failed (HTTP 5xx, an RPC 500)."""

    status: int = 500
    detail: str = ""
    recovery: ClassVar[str] = "retry with backoff"
    supervisor_failure_kind: ClassVar[str] = "temporary"


@attrs.frozen(auto_exc=True)
class AuthRevoked(Failure, PermissionError):
    """The credentials no longer work (401/404 token, revoked session, duplicated key).

    A normal exit: a TRANSIENT worker stays down and visible until someone
    (``restart_child``) logs it in again; restarting would only repeat it.
    """

    cause: str = ""
    supervisor_normal_exit: ClassVar[bool] = True
    recovery: ClassVar[str] = "stay down (restart_child after re-login)"
    supervisor_failure_kind: ClassVar[str] = "auth"


@attrs.frozen(auto_exc=True)
class Conflict(Failure):
    """Another consumer holds the resource (HTTP 409: another poller or a webhook).

    A normal exit, like :class:`AuthRevoked`.
    """

    detail: str = ""
    supervisor_normal_exit: ClassVar[bool] = True
    recovery: ClassVar[str] = "stay down"
    supervisor_failure_kind: ClassVar[str] = "conflict"


@attrs.frozen(auto_exc=True)
class Crashed(Failure):
    """Anything unexpected: the original exception is ``exception`` (and ``__cause__``)."""

    exception: BaseException = attrs.field(eq=False)
    recovery: ClassVar[str] = "restart with backoff"
    supervisor_failure_kind: ClassVar[str] = "unknown"


@attrs.frozen(auto_exc=True)
class UnexpectedStop(Failure):
    """A worker's ``run`` returned though nobody asked it to stop.

    A connection worker's loop that ends on its own (a poll loop that "stopped
    normally") is a fault: not a normal exit, so a TRANSIENT worker is restarted
    as after a crash. A requested stop (``worker.stop()``, ``ctx.stop()``,
    ``Registry.stop(name)``) is a normal exit instead.
    """

    worker: str = ""
    recovery: ClassVar[str] = "restart with backoff"


#: Every failure kind, for documentation and exhaustive tests.
FAILURE_KINDS: tuple[type[Failure], ...] = (
    ConnectionLost,
    HeartbeatTimeout,
    FloodWait,
    RateLimited,
    ProxyFailed,
    PoolExhausted,
    ServerError,
    AuthRevoked,
    Conflict,
    UnexpectedStop,
    Crashed,
)
