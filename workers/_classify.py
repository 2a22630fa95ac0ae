"""From library exceptions to typed failures: an extensible classifier.

The default rules know pyrogram.errors, httpx, trio-websocket, trio and
OSError. They look a library up only if it is already imported, so none of
them is a dependency. User rules go first: ``DEFAULT.extend(my_rule)``.
"""

from __future__ import annotations

import errno
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import trio

from ._failures import (
    AuthRevoked,
    Conflict,
    ConnectionLost,
    Crashed,
    Failure,
    FloodWait,
    HeartbeatTimeout,
    PoolExhausted,
    ProxyFailed,
    RateLimited,
    ServerError,
)

#: A rule maps an exception to a failure, or returns ``None`` to pass.
Rule = Callable[[BaseException], Failure | None]

#: The close code of a connection that ended without a close frame (RFC 6455).
ABNORMAL_CLOSURE = 1006

_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
    errno.ETIMEDOUT,
}


def _retry_after(headers: Any) -> float | None:
    """A ``Retry-After`` header in seconds, if present and numeric."""
    try:
        value = headers.get("retry-after") if headers is not None else None
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


#: The one table from an HTTP status to a failure, used by the poller, the
#: WebSocket worker and the classifier alike; 5xx is :class:`ServerError`.
#: A 429 is :class:`RateLimited` (with a ``Retry-After`` header's seconds), or
#: :class:`FloodWait` when the answer carries Telegram's ``parameters.retry_after``.
STATUS_FAILURES: Final[Mapping[int, type[Failure]]] = MappingProxyType(
    {401: AuthRevoked, 403: AuthRevoked, 404: AuthRevoked, 409: Conflict, 429: RateLimited}
)


def known_status_failure(
    status: int,
    *,
    retry_after: float | None = None,
    flood_wait: float | None = None,
    detail: str = "",
) -> Failure | None:
    """The failure :data:`STATUS_FAILURES` (or 5xx) gives ``status``; ``None`` if neither does.

    Args:
        status: The HTTP status.
        retry_after: A 429's ``Retry-After`` header, in seconds.
        flood_wait: A 429's server-given wait (Telegram's ``parameters.retry_after``).
        detail: The server's description, kept in the failure.
    """
    kind = STATUS_FAILURES.get(status)
    if kind is RateLimited:
        if flood_wait is not None:
            return FloodWait(seconds=flood_wait)
        return RateLimited(retry_after=retry_after)
    if kind is AuthRevoked:
        return AuthRevoked(cause=f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
    if kind is Conflict:
        return Conflict(detail=detail)
    if 500 <= status <= 599:
        return ServerError(status=status, detail=detail)
    return None


def status_failure(status: int, *, retry_after: float | None = None, detail: str = "") -> Failure:
    """The failure an HTTP status means (:data:`STATUS_FAILURES`); any other is a ServerError."""
    known = known_status_failure(status, retry_after=retry_after, detail=detail)
    return ServerError(status=status, detail=detail) if known is None else known


# an RPC error Pyrogram has no class for keeps the server's code and message as its
# value, "[502 BAD_GATEWAY]" (in an UnknownError, CODE 520) or "[420 FLOOD_PREMIUM_WAIT_5]"
_RAW_RPC: Final = re.compile(r"^\[(\d+) (\S+)\]$")
# Pyrogram's own reading of the number in a message (FLOOD_WAIT_30: 30 seconds)
_RPC_NUMBER: Final = re.compile(r"_(\d+)")


def _rpc_status(exc: Any) -> tuple[int | None, str, int | None]:
    """An RPC error's real code, its message and the number in it (Pyrogram's ``value``)."""
    value = getattr(exc, "value", None)
    raw = _RAW_RPC.match(value) if isinstance(value, str) else None
    if raw is not None:
        number = _RPC_NUMBER.search(raw[2])
        return int(raw[1]), raw[2], None if number is None else int(number[1])
    code = getattr(exc, "CODE", None)
    name = getattr(exc, "ID", None) or type(exc).__name__
    return (
        code if isinstance(code, int) else None,
        str(name),
        value if isinstance(value, int) and not isinstance(value, bool) else None,
    )


def pyrogram_rule(exc: BaseException) -> Failure | None:
    """pyrogram.errors, by the code and message the server sent.

    - 420 (``FloodWait``, the other ``Flood`` classes, and a 420 Pyrogram has no
      class for, as ``FLOOD_PREMIUM_WAIT_5``) → :class:`FloodWait` with the seconds
      in the message; a 420 without seconds (``PEER_FLOOD``) → :class:`RateLimited`;
    - 401 (``Unauthorized``: ``AUTH_KEY_UNREGISTERED``, ``SESSION_REVOKED``,
      ``USER_DEACTIVATED_BAN`` ...) and 406 ``AUTH_KEY_DUPLICATED`` → :class:`AuthRevoked`;
    - 429 → :class:`RateLimited` (the seconds in the message, if any);
    - 5xx, also a code Pyrogram does not know (``UnknownError`` holds 502, 504 ...)
      → :class:`ServerError` with the server's code.

    Anything else (400, 403, 303 ...) is a request's own error: ``None``.
    """
    errors = sys.modules.get("pyrogram.errors")
    if errors is None or not isinstance(exc, errors.RPCError):
        return None
    code, message, number = _rpc_status(exc)
    if code == 420 or isinstance(exc, errors.Flood):
        return RateLimited() if number is None else FloodWait(seconds=number)
    if isinstance(exc, errors.Unauthorized | errors.AuthKeyDuplicated) or code == 401:
        return AuthRevoked(cause=message)
    if code == 429:
        return RateLimited(retry_after=number)
    if code is not None and 500 <= code <= 599:
        return ServerError(status=code, detail=message)
    return None


# Pyrogram raises a bare ConnectionError also for misuse ("Client is already
# connected", "Client has not been started yet", "Can't disconnect an initialized
# client"): a bug in the caller, not a lost connection
_MISUSE: Final = re.compile(r"^(Client (is|has)|Can't )")


def pyrogram_client_rule(exc: BaseException) -> Failure | None:
    """Pyrogram's and PySocks' errors that are not RPC errors (no errno to go by).

    - PySocks' ``ProxyError`` (Pyrogram's proxies; httpx's are ``httpx.ProxyError``)
      → :class:`ProxyFailed`, also wrapped in Pyrogram's bare ``OSError(error)``;
    - an errno-less ``ConnectionError``: Pyrogram's after its connection attempts
      failed (no message), "Received empty data", asyncio's "Connection lost" →
      :class:`ConnectionLost`; but one whose message says misuse ("Client is
      already connected", "Can't disconnect an initialized client", "Client has not
      been started yet") → :class:`Crashed`;
    - Pyrogram's ``OSError(error)`` around a failed send → :class:`ConnectionLost`.
    """
    if not isinstance(exc, OSError) or exc.errno is not None:
        return None
    wrapped = exc.args[0] if type(exc) is OSError and len(exc.args) == 1 else None
    socks = sys.modules.get("socks")
    for error in (exc, wrapped):
        if socks is not None and isinstance(error, socks.ProxyError):
            return ProxyFailed(cause=str(error))
    if isinstance(exc, ConnectionError):
        message = str(exc)
        if _MISUSE.match(message):
            return Crashed(exception=exc)
        return ConnectionLost(reason=message or "Pyrogram's connection attempts failed")
    if isinstance(wrapped, BaseException):
        return ConnectionLost(reason=f"send failed: {exc}")
    return None


def httpx_rule(exc: BaseException) -> Failure | None:
    """httpx: pool, proxy, transport and timeout errors, and status errors."""
    httpx = sys.modules.get("httpx")
    if httpx is None or not isinstance(exc, httpx.HTTPError):
        return None
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhausted(detail=str(exc))
    if isinstance(exc, httpx.ProxyError):
        return ProxyFailed(cause=str(exc))
    if isinstance(exc, httpx.TimeoutException):
        return HeartbeatTimeout()
    if isinstance(exc, httpx.TransportError):
        return ConnectionLost(reason=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return status_failure(
            response.status_code,
            retry_after=_retry_after(response.headers),
            detail=response.reason_phrase,
        )
    return None


def websocket_rule(exc: BaseException) -> Failure | None:
    """trio-websocket: a close with its code, a rejected handshake by status."""
    ws = sys.modules.get("trio_websocket")
    if ws is None:
        return None
    if isinstance(exc, ws.ConnectionClosed):
        reason = exc.reason
        if reason is None:
            return ConnectionLost(code=ABNORMAL_CLOSURE)
        return ConnectionLost(code=reason.code, reason=reason.reason or "")
    if isinstance(exc, ws.ConnectionRejected):
        headers = {k.decode().lower(): v.decode() for k, v in (exc.headers or ())}
        return status_failure(exc.status_code, retry_after=_retry_after(headers))
    if isinstance(exc, ws.ConnectionTimeout):
        return HeartbeatTimeout()
    if isinstance(exc, ws.HandshakeError | ws.DisconnectionTimeout):
        return ConnectionLost(code=ABNORMAL_CLOSURE, reason=type(exc).__name__)
    return None


def network_rule(exc: BaseException) -> Failure | None:
    """trio and OS network errors, by errno (errno-less ones: :func:`pyrogram_client_rule`)."""
    if isinstance(exc, trio.BrokenResourceError):
        return ConnectionLost(reason="broken stream")
    if isinstance(exc, trio.TooSlowError | TimeoutError):
        return HeartbeatTimeout()
    if isinstance(exc, socket.gaierror):
        return ConnectionLost(reason=f"name resolution: {exc}")
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return ConnectionLost(reason=f"{type(exc).__name__}: {exc}")
    cause = exc.__cause__
    # trio.open_tcp_stream: an errno-less "all attempts to connect ... failed",
    # the per-address errors grouped in its cause
    if (
        isinstance(exc, OSError)
        and exc.errno is None
        and isinstance(cause, ExceptionGroup)
        and any(isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS for e in cause.exceptions)
    ):
        return ConnectionLost(reason=f"{type(exc).__name__}: {exc}")
    return None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Classifier:
    """Maps exceptions to typed failures by trying rules in order.

    A :class:`Failure` is returned as it is; an exception no rule knows
    becomes :class:`Crashed`. A group of one exception is looked into.

    Args:
        rules: Tried in order; the first that returns a failure wins.
    """

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)

    def extend(self, *rules: Rule) -> Classifier:
        """A new classifier that tries ``rules`` before these."""
        return Classifier((*rules, *self.rules))

    def classify(self, exc: BaseException) -> Failure:
        """The failure ``exc`` means."""
        exc = _leaf(exc)
        if isinstance(exc, Failure):
            return exc
        for rule in self.rules:
            failure = rule(exc)
            if failure is not None:
                return failure
        return Crashed(exception=exc)

    __call__ = classify


#: The default rules: pyrogram (RPC, then its and PySocks' connection errors), httpx,
#: trio-websocket, then network errors.
DEFAULT = Classifier(
    (pyrogram_rule, pyrogram_client_rule, httpx_rule, websocket_rule, network_rule)
)
