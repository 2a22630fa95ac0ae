"""The HTTP long-polling worker (httpx): Telegram Bot API ``getUpdates``, or any long poll.

One incarnation of :class:`PollingLoopWorker` owns two ``httpx.AsyncClient``:
one for the long poll only (``max_connections=1``, read timeout = poll timeout
+ a margin), and one for the application's other API calls
(:meth:`PollingLoopWorker.call_api`), so that a ``sendMessage`` never waits
behind a long poll for the poll's single connection. Both are created in
``init`` and closed after ``terminate``: a restart always starts with fresh
pools, which is how a ``PoolTimeout`` (a leaked or stolen connection) is
cured.

How a poll's outcome becomes a typed failure (the worker exits with it and
its supervisor decides):

============================================  =====================================
``httpx.PoolTimeout``                         :class:`~workers.PoolExhausted`
``ReadError``/``WriteError``/                 one immediate retry when the request
``RemoteProtocolError``                       went out on a reused keep-alive
                                              connection (it may have been closed
                                              by the server while idle); then
                                              :class:`~workers.ConnectionLost`
with a proxy configured, any failure before   :class:`~workers.ProxyFailed` (the
the tunnel is up: ``ProxyError``,             next incarnation takes the next
``ConnectError``, a CONNECT or SOCKS5         proxy)
handshake not answered within
``connect_timeout``, a proxy closing it
``ReadTimeout`` (no answer in poll + margin)  :class:`~workers.HeartbeatTimeout`
an HTTP status                                the one status table,
                                              ``workers.STATUS_FAILURES``: 401,
                                              403, 404 :class:`~workers.AuthRevoked`;
                                              409 :class:`~workers.Conflict`; 429
                                              :class:`~workers.FloodWait` with
                                              Telegram's ``parameters.retry_after``,
                                              else :class:`~workers.RateLimited`;
                                              5xx :class:`~workers.ServerError`
any other error status (400...)               :class:`ApiError` (a ``Crashed``)
an answer that is not the API's: not JSON,    :class:`~workers.ServerError`
nested too deep to decode, longer than
``max_response_bytes``, not a list of
updates, an ``update_id`` that is not an
integer in 0..2**63-2
updates below the offset                      :class:`StaleUpdates`, after the rest
                                              of the answer (``on_stale_update``)
============================================  =====================================

:meth:`PollingLoopWorker.call_api` maps its answers by the same table, except
that 403 (``Forbidden: bot was blocked by the user``) and 409 are the
request's: an :class:`ApiError`.

Delivery: the offset moves past an update only once its handler has returned
(or it was skipped), in memory at once (no checkpoint between the handler's
return and that move, so no restart can come in between) and then in an
:class:`OffsetStore`, before the next update is handled. Each incarnation
resumes from the later of the two; one ending with the store behind memory (a
save cut short) writes it there, within its shutdown grace. So:

- within one process, across any number of restarts and clean stops, an
  update whose handler returned is never handed to it again (exactly once);
- across a process killed outright (``kill -9``, a power cut with
  ``fsync``), a :class:`FileOffsetStore` loses nothing and repeats at most
  the updates not yet written: with ``SaveOffset.EACH_UPDATE`` at most one
  update per kill (the one being handled, or just handled), with
  ``SaveOffset.EACH_POLL`` at most one poll's answer (``limit`` updates);
- a handler cancelled before it returns runs again on the next incarnation:
  handlers are at-least-once until they return.

Handler errors are the handler's: an ordinary exception is reported
(:attr:`PollingLoopWorker.handler_failures`, the ``workers.polling`` logger)
and the update is tried again, up to ``max_handler_attempts`` times in all,
then skipped or, with ``OnHandlerFailure.STOP``, the worker stops with
:class:`UpdateFailed`. A typed :class:`~workers.Failure` raised by the handler
(a ``FloodWait`` from ``call_api("sendMessage", ...)``, say) is not the
update's fault: it ends the incarnation and the update comes again after the
restart.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import logging
import math
import os
import re
import reprlib
import ssl
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import attrs
import httpx
import trio

from ._actor import Context, Worker
from ._classify import known_status_failure
from ._exceptions import NotRunning
from ._failures import (
    ConnectionLost,
    Failure,
    HeartbeatTimeout,
    PoolExhausted,
    ProxyFailed,
    ServerError,
)
from ._mailbox import Registry
from ._redact import (
    install_log_redaction,
    redact,
    redact_exception,
    redact_repr,
    register_url_secrets,
)

__all__ = [
    "ApiError",
    "FileOffsetStore",
    "HandlerFailure",
    "MemoryOffsetStore",
    "OffsetStore",
    "OnHandlerFailure",
    "OnStaleUpdate",
    "PollingConfig",
    "PollingConfigError",
    "PollingLoopWorker",
    "PollingStats",
    "SaveOffset",
    "StaleUpdates",
    "Update",
    "UpdateFailed",
    "UpdateHandler",
]

log = logging.getLogger("workers.polling")

Update: TypeAlias = dict[str, Any]
"""One update: a JSON object with an integer ``update_id`` (Bot API shape)."""

UpdateHandler: TypeAlias = Callable[[Update], Awaitable[object]]
"""Handles one update; the offset moves past it once this returns."""

_PROXY_SCHEMES = frozenset({"http", "https", "socks5", "socks5h"})


# --------------------------------------------------------------------------- errors


class PollingConfigError(ValueError):
    """A :class:`PollingConfig` (or an offset store) was given a bad value.

    Attributes:
        field: The name of the offending field.
    """

    def __init__(self, field: str, problem: str, owner: str = "PollingConfig") -> None:
        self.field = field
        super().__init__(f"{owner}: field {field!r}: {problem}")


class ApiError(Exception):
    """The API answered an error that is the request's, not the connection's.

    Telegram's ``400 Bad Request: chat not found`` or ``403 Forbidden: bot was
    blocked by the user`` from :meth:`PollingLoopWorker.call_api`; raised in a
    handler, it counts as a handler error.

    Attributes:
        status: The HTTP status (Telegram's ``error_code``).
        description: Telegram's ``description``.
        parameters: Telegram's ``parameters`` (``migrate_to_chat_id``...).
    """

    def __init__(self, status: int, description: str, parameters: Mapping[str, Any]) -> None:
        self.status = status
        self.description = description
        self.parameters = dict(parameters)
        super().__init__(f"{status} {description}")


@attrs.frozen(auto_exc=True)
class UpdateFailed(Failure):
    """The handler failed on one update ``attempts`` times and the policy is to stop.

    A normal exit: a TRANSIENT worker stays down with the offset still on the
    update, until someone fixes the handler and restarts it.
    """

    update_id: int = 0
    attempts: int = 0
    cause: str = ""
    supervisor_normal_exit: ClassVar[bool] = True
    recovery: ClassVar[str] = "stay down (fix the handler, then restart_child)"


@attrs.frozen(auto_exc=True)
class StaleUpdates(Failure):
    """The server answered updates below the offset the poll carried (see :class:`OnStaleUpdate`).

    Raised once the rest of the answer is handled; the restart's backoff
    paces a server that keeps sending them.

    Attributes:
        offset: The offset the poll carried.
        count: How many updates were below it.
        first_id: The lowest of their ``update_id``.
        last_id: The highest.
        handled: Whether they were handled (``RESYNC``) or dropped (``SKIP``).
    """

    offset: int = 0
    count: int = 0
    first_id: int = 0
    last_id: int = 0
    handled: bool = False
    recovery: ClassVar[str] = "restart with backoff (SKIP drops them, RESYNC follows the new ids)"


# --------------------------------------------------------------------------- configuration


class SaveOffset(enum.Enum):
    """When the worker writes the offset to its :class:`OffsetStore`.

    Either way the offset moves in memory after each update and is written
    when an incarnation ends, so restarts within a process and clean
    shutdowns repeat nothing; the choice matters only for a process that is
    killed outright.
    """

    #: After every handled update: a killed process repeats at most one update
    #: (the one being handled or just handled when it died; one store write per
    #: update, and a durable file costs milliseconds each).
    EACH_UPDATE = "each_update"
    #: Once per answered poll, after its updates: a killed process repeats at
    #: most the updates of the poll it was handling (``limit``).
    EACH_POLL = "each_poll"


class OnHandlerFailure(enum.Enum):
    """What the worker does with an update whose handler failed every attempt."""

    #: Report it, move the offset past it and go on with the next update.
    SKIP = "skip"
    #: Stop the worker with :class:`UpdateFailed`, the offset still on the update.
    STOP = "stop"


class OnStaleUpdate(enum.Enum):
    """What the worker does with updates whose ``update_id`` is below its offset.

    A server that honours the offset never sends one: it means the server
    ignored the offset the poll carried, or its ids started again lower (a
    server-side reset). Either way each such answer is logged at WARNING,
    counted (:attr:`PollingStats.stale_updates`) and, once the rest of the
    answer is handled, ends the incarnation with :class:`StaleUpdates`, so it
    shows in the tree's exits and ``/metrics``
    (``supervisor_child_exits_total{kind="StaleUpdates"}``) and the next poll
    waits for the restart's backoff instead of looping hot.
    """

    #: Drop them (they may be updates already handled): nothing is handled twice.
    SKIP = "skip"
    #: Handle them and let the offset follow the server's new ids down: for a
    #: server whose ids were reset, where skipping would drop every new update.
    RESYNC = "resync"


def _seconds(minimum: float, *, strict: bool = False) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PollingConfigError(attribute.name, f"must be a number of seconds, not {value!r}")
        ok = value > minimum if strict else value >= minimum
        if not ok or not math.isfinite(value):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise PollingConfigError(attribute.name, f"must be finite and {bound}, not {value!r}")

    return check


def _count(minimum: int, *, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise PollingConfigError(attribute.name, f"must be an int >= {minimum}, not {value!r}")

    return check


def _http_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "api_url":
        return
    if not isinstance(value, str):
        raise PollingConfigError(
            attribute.name, f"must be a URL string, not {type(value).__name__}"
        )
    register_url_secrets(value)  # before any message can show it
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise PollingConfigError(
            attribute.name, f"invalid URL {redact(value)!r}: {redact(str(error))}"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise PollingConfigError(
            attribute.name, f"must be an absolute http(s) URL, not {redact(value)!r}"
        )


def _proxy_urls(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for proxy in value:
        if not isinstance(proxy, str):
            raise PollingConfigError(
                attribute.name, f"proxies are URL strings, not {type(proxy).__name__}"
            )
        register_url_secrets(proxy)
        try:
            url = httpx.URL(proxy)
        except httpx.InvalidURL as error:
            raise PollingConfigError(
                attribute.name, f"invalid proxy URL {redact(proxy)!r}: {redact(str(error))}"
            ) from None
        if url.scheme not in _PROXY_SCHEMES or not url.host:
            raise PollingConfigError(
                attribute.name,
                f"{redact(proxy)!r}: scheme must be one of {sorted(_PROXY_SCHEMES)}",
            )


def _proxy_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        raise PollingConfigError("proxies", "give a sequence of URLs, not one string")
    return tuple(value)


def _kinds_tuple(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        raise PollingConfigError("allowed_updates", "give a sequence of kinds, not one string")
    return None if value is None else tuple(value)


def _verify(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool | ssl.SSLContext):
        raise PollingConfigError(attribute.name, f"must be a bool or an ssl.SSLContext: {value!r}")


@attrs.frozen(kw_only=True)
class PollingConfig:
    """How a :class:`PollingLoopWorker` polls; validated on construction.

    Attributes:
        url: The long-poll endpoint, e.g.
            ``https://api.telegram.org/bot<token>/getUpdates``.
        api_url: The base of other API calls (default: ``url`` without its
            last path segment, i.e. ``.../bot<token>/``).
        poll_timeout: Seconds the server may hold a poll (sent as ``timeout``).
        read_margin: Added to ``poll_timeout`` for the read timeout: a poll
            with no answer after both is a dead link.
        connect_timeout: Seconds to establish a connection: TCP, the proxy's
            ``CONNECT`` or SOCKS5 handshake, and TLS. With a proxy, past it
            is :class:`~workers.ProxyFailed`, so this is also how long a
            proxy that accepts connections but never answers holds the
            worker before it rotates to the next (httpx alone reads a
            ``CONNECT`` answer under the read timeout, a SOCKS5 one under
            none).
        write_timeout: Seconds to send a request.
        pool_timeout: Seconds to wait for the poll client's one connection.
        limit: Updates per poll (``limit``; Telegram allows 1-100); ``None``
            leaves it to the server.
        allowed_updates: Update kinds to receive (``None``: the server's choice).
        proxies: Proxy URLs (``http://``, ``https://``, ``socks5://``,
            ``socks5h://``; SOCKS needs ``httpx[socks]``), rotated on
            :class:`~workers.ProxyFailed`. Empty: connect directly.
        verify: TLS verification: ``True`` (certifi's CAs), ``False``, or an
            ``ssl.SSLContext``.
        trust_env: Also honour ``HTTP(S)_PROXY``/``NO_PROXY``/``SSL_CERT_FILE``
            from the environment (off: ``proxies`` is the only source).
        max_handler_attempts: Tries of a failing handler per update.
        on_handler_failure: Then skip the update, or stop the worker.
        handler_retry_delay: Seconds between tries of a failing handler.
        save_offset: Write the offset store after each update, or each poll.
        api_timeout: Seconds for each of ``call_api``'s read/write phases.
        api_max_connections: The API client's connection pool size.
        max_response_bytes: The longest answer (decoded) read from the server,
            polls and ``call_api`` alike (default 16 MiB, far above the Bot
            API's largest): past it the read stops and the worker fails with
            :class:`~workers.ServerError`, whatever the server keeps sending.
        body_timeout: Seconds to read a whole answer once its headers came
            (polls and ``call_api`` alike): a server that trickles a body
            under ``max_response_bytes``, each piece within the read
            timeout, fails with :class:`~workers.ServerError` past it
            instead of holding the worker for as long as it likes.
        on_stale_update: What to do with updates below the offset
            (:class:`OnStaleUpdate`; default: skip them).
    """

    url: str = attrs.field(validator=_http_url, repr=redact_repr)
    api_url: str | None = attrs.field(default=None, validator=_http_url, repr=redact_repr)
    poll_timeout: float = attrs.field(default=10.0, validator=_seconds(0))
    read_margin: float = attrs.field(default=5.0, validator=_seconds(0, strict=True))
    connect_timeout: float = attrs.field(default=5.0, validator=_seconds(0, strict=True))
    write_timeout: float = attrs.field(default=5.0, validator=_seconds(0, strict=True))
    pool_timeout: float = attrs.field(default=1.0, validator=_seconds(0, strict=True))
    limit: int | None = attrs.field(default=100, validator=_count(1, optional=True))
    allowed_updates: tuple[str, ...] | None = attrs.field(default=None, converter=_kinds_tuple)
    proxies: tuple[str, ...] = attrs.field(
        default=(), converter=_proxy_tuple, validator=_proxy_urls, repr=redact_repr
    )
    verify: ssl.SSLContext | bool = attrs.field(default=True, validator=_verify)
    trust_env: bool = False
    max_handler_attempts: int = attrs.field(default=3, validator=_count(1))
    on_handler_failure: OnHandlerFailure = attrs.field(
        default=OnHandlerFailure.SKIP, validator=attrs.validators.instance_of(OnHandlerFailure)
    )
    handler_retry_delay: float = attrs.field(default=0.0, validator=_seconds(0))
    save_offset: SaveOffset = attrs.field(
        default=SaveOffset.EACH_UPDATE, validator=attrs.validators.instance_of(SaveOffset)
    )
    api_timeout: float = attrs.field(default=10.0, validator=_seconds(0, strict=True))
    api_max_connections: int = attrs.field(default=10, validator=_count(1))
    max_response_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_count(1024))
    body_timeout: float = attrs.field(default=30.0, validator=_seconds(0, strict=True))
    on_stale_update: OnStaleUpdate = attrs.field(
        default=OnStaleUpdate.SKIP, validator=attrs.validators.instance_of(OnStaleUpdate)
    )

    def __attrs_post_init__(self) -> None:
        # httpx logs every request's URL, the token in it
        install_log_redaction()

    @property
    def read_timeout(self) -> float:
        """The poll's read timeout: ``poll_timeout + read_margin``."""
        return self.poll_timeout + self.read_margin

    @property
    def api_base(self) -> str:
        """Where ``call_api`` sends its requests (``api_url``, or derived from ``url``)."""
        if self.api_url is not None:
            return self.api_url if self.api_url.endswith("/") else self.api_url + "/"
        return self.url.rsplit("/", 1)[0] + "/"


# --------------------------------------------------------------------------- offsets


@runtime_checkable
class OffsetStore(Protocol):
    """Where the next offset (the last handled ``update_id`` + 1) is kept."""

    async def load(self) -> int | None:
        """The saved offset, or ``None`` if none was saved."""
        ...

    async def save(self, offset: int) -> None:
        """Save ``offset``; once this returns, ``load`` returns it."""
        ...


@attrs.define
class MemoryOffsetStore:
    """Keeps the offset in memory: survives restarts of the worker, not of the process.

    Attributes:
        offset: The saved offset.
    """

    offset: int | None = None

    async def load(self) -> int | None:
        """The saved offset."""
        return self.offset

    async def save(self, offset: int) -> None:
        """Keep ``offset``."""
        self.offset = offset


class FileOffsetStore:
    """Keeps the offset in a small text file that survives process restarts.

    Each save writes a temporary file in the same directory and renames it
    over the old one (``os.replace``), so the file always holds a complete
    offset, old or new, whatever moment the process dies at. File I/O runs in
    a worker thread.

    Args:
        path: The file (its directory must exist).
        fsync: Flush the data and the rename to disk before ``save``
            returns (survives a power cut; a few milliseconds per save).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"FileOffsetStore({self.path!r}, fsync={self.fsync})"

    async def load(self) -> int | None:
        """The offset in the file, or ``None`` if there is no file.

        Only what :meth:`save` writes is an offset: a non-negative integer
        below 2**63 in canonical decimal (no sign, blank, underscore or
        leading zero), and a newline. Temporary files a save killed midway
        left behind are removed first.

        Raises:
            PollingConfigError: the file holds something else (the worker
                fails to start rather than skip or repeat updates).
        """
        return await trio.to_thread.run_sync(self._read)

    def _read(self) -> int | None:
        self._remove_leftovers()
        try:
            with open(self.path, "rb") as file:
                raw = file.read(64)
        except FileNotFoundError:
            return None
        found = _OFFSET_TEXT.fullmatch(raw)
        if found is None or int(found[1]) >= _OFFSET_LIMIT:
            raise PollingConfigError(
                "path",
                f"{self.path!r} does not hold an offset (a non-negative integer below "
                f"2**63, as save() writes it): {raw[:40]!r}",
                "FileOffsetStore",
            )
        return int(found[1])

    def _remove_leftovers(self) -> None:
        """Remove the temporary files of saves a kill cut short (``<name>.<8 chars>.tmp``)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        prefix = os.path.basename(self.path) + "."
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if (
                name.startswith(prefix)
                and name.endswith(".tmp")
                and _TEMPORARY_PART.fullmatch(name[len(prefix) : -len(".tmp")])
            ):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
                    log.info("removed %s, left by a save that was cut short", name)

    async def save(self, offset: int) -> None:
        """Replace the file's offset with ``offset``, atomically."""
        await trio.to_thread.run_sync(self._write, offset)

    def _write(self, offset: int) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=os.path.basename(self.path) + ".", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "w", encoding="ascii") as file:
                file.write(f"{offset}\n")
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if self.fsync:
            # the rename itself is durable only once the directory is synced
            descriptor = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


# --------------------------------------------------------------------------- records


@attrs.define
class PollingStats:
    """Counters of a worker, across all its incarnations.

    Attributes:
        polls: Polls answered with updates (possibly none).
        updates: Updates whose handler returned.
        skipped: Updates skipped after their handler failed every attempt.
        handler_failures: Handler attempts that raised.
        stale_retries: Polls retried because a reused connection had died.
        stale_updates: Updates the server sent below the offset (see
            :class:`OnStaleUpdate`).
        duplicates_dropped: Those of them dropped (``OnStaleUpdate.SKIP``).
    """

    polls: int = 0
    updates: int = 0
    skipped: int = 0
    handler_failures: int = 0
    stale_retries: int = 0
    stale_updates: int = 0
    duplicates_dropped: int = 0


@attrs.frozen
class HandlerFailure:
    """One failed handler attempt, as reported.

    Attributes:
        update_id: The update.
        attempt: 1 for the first try.
        exception: What the handler raised.
        final: Whether it was the last attempt (the update is then skipped,
            or the worker stops).
        time: ``trio.current_time()`` of the failure.
    """

    update_id: int
    attempt: int
    exception: BaseException = attrs.field(eq=False)
    final: bool
    time: float


class _ConnectionTrace:
    """httpcore's ``trace`` extension: a new connection must be up within ``connect_timeout``.

    httpx bounds the TCP connect and TLS by its connect timeout, but reads a
    proxy's ``CONNECT`` answer under the read timeout (the poll's, 15 s by
    default) and a SOCKS5 proxy's answers under none at all: a proxy that
    accepts and never answers would hold the worker for good. So when a
    connection opens, the trace puts a deadline on ``scope``, and lifts it
    when the request itself goes out (the tunnel is up).
    """

    __slots__ = ("connect_timeout", "established", "opened", "scope", "stream")

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.opened = False
        self.established = False
        self.scope = trio.CancelScope()
        self.stream: Any = None

    async def abandon(self) -> None:
        """Close a connection given up before it was up.

        httpcore's SOCKS proxy leaves the socket of a failed or cancelled
        handshake open for the garbage collector; closing twice is harmless.
        """
        if self.stream is not None and not self.established:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    @property
    def setting_up(self) -> bool:
        """Whether a new connection was being set up (not yet carrying the request)."""
        return self.opened and not self.established

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        # "connection.connect_tcp.started", or "socks.connect_tcp..." through SOCKS
        if name.endswith("connect_tcp.started"):
            self.opened = True
            self.scope.deadline = trio.current_time() + self.connect_timeout
        elif name.endswith("connect_tcp.complete"):
            self.stream = info.get("return_value")
        elif (
            name.endswith("send_request_headers.started")
            # the tunnel's own CONNECT request goes through here too
            and getattr(info.get("request"), "method", None) != b"CONNECT"
        ):
            self.established = True
            self.scope.deadline = math.inf


# a reused keep-alive connection that the server had closed fails in one of these ways
_STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


# what FileOffsetStore.save writes, and nothing else
_OFFSET_TEXT = re.compile(rb"(0|[1-9][0-9]{0,18})\n?")
_OFFSET_LIMIT = 2**63
# the random part tempfile.mkstemp puts in a name
_TEMPORARY_PART = re.compile(r"[a-z0-9_]{8}")


@functools.cache
def _default_ssl_context(verify: bool, trust_env: bool) -> ssl.SSLContext:
    # one context serves any number of clients; a thousand pollers share it
    return httpx.create_ssl_context(verify=verify, trust_env=trust_env)


def _failure_in(error: BaseException) -> Failure | None:
    """The first typed failure inside an exception group, if any."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _failure_in(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, Failure) else None


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
        return None


async def _read_capped(response: httpx.Response, limit: int) -> None:
    """Read the body as ``response.aread()`` does, but fail past ``limit`` bytes.

    Raises:
        ServerError: the body (decoded: a gzip bomb counts in full) is longer.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_long(response, limit)
    chunks: list[bytes] = []
    size = 0
    over = False
    try:
        async for chunk in response.aiter_bytes():
            if over:
                continue  # what was buffered before the close below
            size += len(chunk)
            if size > limit:
                over = True
                # end the body from below: the next read fails and each of httpx's
                # and httpcore's nested stream generators ends as on a lost link
                # (leaving the loop here would leave them suspended, for the GC)
                if not await _close_network_stream(response):
                    break  # not HTTP/1.1 over httpcore: stop reading all the same
                continue
            chunks.append(chunk)
    except httpx.TransportError:
        if not over:
            raise
    if over:
        raise _too_long(response, limit)
    response._content = b"".join(chunks)  # what aread() sets: .content works as usual


async def _close_network_stream(response: httpx.Response) -> bool:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return False
    with contextlib.suppress(Exception):
        await stream.aclose()
    return True


def _too_long(response: httpx.Response, limit: int) -> ServerError:
    return ServerError(
        status=response.status_code,
        detail=f"the answer is longer than max_response_bytes ({limit:,} bytes)",
    )


def _too_slow(response: httpx.Response, timeout: float) -> ServerError:
    return ServerError(
        status=response.status_code,
        detail=f"the answer's body did not end within body_timeout ({timeout}s)",
    )


def _error_parts(response: httpx.Response) -> tuple[str, Mapping[str, Any]]:
    body = _json(response)
    reason = response.reason_phrase or httpx.codes.get_reason_phrase(response.status_code)
    if isinstance(body, dict):
        description = body.get("description")
        parameters = body.get("parameters")
        return (
            str(description) if description is not None else reason,
            parameters if isinstance(parameters, dict) else {},
        )
    return reason, {}


def _seconds_or_none(value: Any) -> float | None:
    try:
        seconds = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# the request's own errors on a call_api, not the connection's: "bot was blocked
# by the user" must not stop the poller
_PER_REQUEST_STATUSES = frozenset({403, 409})


def _shared_failure(response: httpx.Response, *, per_request: bool = False) -> Failure | ApiError:
    """What an error answer means, by the one status table (``STATUS_FAILURES``)."""
    status = response.status_code
    description, parameters = _error_parts(response)
    failure = None
    if not (per_request and status in _PER_REQUEST_STATUSES):
        failure = known_status_failure(
            status,
            retry_after=_seconds_or_none(response.headers.get("retry-after")),
            flood_wait=_seconds_or_none(parameters.get("retry_after")),
            detail=description,
        )
    return ApiError(status, description, parameters) if failure is None else failure


# --------------------------------------------------------------------------- the worker


class PollingLoopWorker(Worker):
    """Long-polls an HTTP endpoint and hands each update to a handler, in order.

    Shaped after the Telegram Bot API's ``getUpdates``; for another endpoint,
    override :meth:`request_params`, :meth:`decode` and :meth:`update_id`.
    Give it a ``handler`` or override :meth:`handle_update`.

    The same object serves every incarnation and keeps what must survive a
    restart: the offset store, the proxy rotation, the statistics.

    Args:
        config: How to poll.
        handler: Called with each update, one at a time.
        offsets: Where the offset is kept (default: in memory).
        name: The name it registers under (default: its child id).
        registry: Where it registers (default: ``workers.registry``).

    Example::

        worker = PollingLoopWorker(
            PollingConfig(url=f"https://api.telegram.org/bot{token}/getUpdates"),
            handle,
            offsets=FileOffsetStore("offset.txt"),
        )
        # restarts with backoff; a revoked token (AuthRevoked) leaves it down, visible
        supervisor.run(SupervisorSpec(children=[worker.reconnecting_child_spec("poller")]))
    """

    #: How many handler failures :attr:`handler_failures` keeps.
    handler_failure_history: ClassVar[int] = 100

    def __init__(
        self,
        config: PollingConfig,
        handler: UpdateHandler | None = None,
        *,
        offsets: OffsetStore | None = None,
        name: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        super().__init__(name=name, registry=registry)
        if not isinstance(config, PollingConfig):
            raise TypeError(f"PollingLoopWorker: 'config' must be a PollingConfig: {config!r}")
        if handler is None and type(self).handle_update is PollingLoopWorker.handle_update:
            raise TypeError("PollingLoopWorker: give a 'handler' or override handle_update()")
        if offsets is not None and not isinstance(offsets, OffsetStore):
            raise TypeError(f"PollingLoopWorker: 'offsets' must be an OffsetStore: {offsets!r}")
        self._config = config
        self._offsets: OffsetStore = offsets if offsets is not None else MemoryOffsetStore()
        self.stats = PollingStats()
        self.handler_failures: deque[HandlerFailure] = deque(maxlen=self.handler_failure_history)
        self._handler = handler
        self._proxy_index = 0
        self._ssl_context: ssl.SSLContext | None = None
        self._offset: int | None = None
        self._saved: int | None = None
        self._poll_client: httpx.AsyncClient | None = None
        self._api_client: httpx.AsyncClient | None = None
        self._fixed_params = self._static_params()
        self._save_each_update = config.save_offset is SaveOffset.EACH_UPDATE
        # fast paths for the defaults, one await less each per update
        self._memory_store = self.offsets if type(self.offsets) is MemoryOffsetStore else None
        overridden = type(self).handle_update is not PollingLoopWorker.handle_update
        self._direct_handler = None if overridden else handler

    # ----------------------------------------------------------------- state

    @property
    def config(self) -> PollingConfig:
        """How it polls (fixed at construction)."""
        return self._config

    @property
    def offsets(self) -> OffsetStore:
        """Where the offset is kept (fixed at construction)."""
        return self._offsets

    @property
    def proxy(self) -> str | None:
        """The proxy this (or the next) incarnation uses; ``None``: direct."""
        proxies = self.config.proxies
        return proxies[self._proxy_index % len(proxies)] if proxies else None

    @property
    def offset(self) -> int | None:
        """The offset the next poll asks from (the last handled ``update_id`` + 1)."""
        return self._offset

    @property
    def poll_client(self) -> httpx.AsyncClient | None:
        """The running incarnation's poll client (``None`` between incarnations).

        For inspection: a request sent through it holds the poll's only
        connection, and the next poll ends in :class:`~workers.PoolExhausted`.
        """
        return self._poll_client

    @property
    def api_client(self) -> httpx.AsyncClient:
        """The running incarnation's client for other API calls (base URL ``api_base``).

        Raises:
            NotRunning: no incarnation is running.
        """
        if self._api_client is None:
            raise NotRunning(self._name or type(self).__name__)
        return self._api_client

    # ----------------------------------------------------------------- lifecycle

    async def init(self, ctx: Context) -> None:
        """Pick the proxy, load the offset and open this incarnation's clients."""
        if isinstance(ctx.last_failure, ProxyFailed) and len(self.config.proxies) > 1:
            self._proxy_index += 1
            log.warning("proxy failed (%s); next: %s", ctx.last_failure, redact(str(self.proxy)))
        stored = await self.offsets.load()
        self._saved = stored
        if stored is not None and (self._offset is None or stored > self._offset):
            self._offset = stored
        await self._flush_offset()
        if self._ssl_context is None:
            verify = self.config.verify
            if isinstance(verify, ssl.SSLContext):
                self._ssl_context = verify
            else:
                # certifi's bundle takes ~10 ms to load: once per process, in a thread
                self._ssl_context = await trio.to_thread.run_sync(
                    _default_ssl_context, verify, self.config.trust_env
                )
        await ctx.enter(self._open_clients())

    async def run(self, ctx: Context) -> None:
        """Poll, hand each update to the handler, save the offset; until stopped."""
        each_poll = self.config.save_offset is SaveOffset.EACH_POLL
        while True:
            offset = self._offset
            updates = await self.poll()
            stale: list[int] = []
            for update in updates:
                await self._dispatch(ctx, update, stale)
            if each_poll and self._offset != self._saved:
                await self._save_offset()
            if stale:
                assert offset is not None
                raise self._stale_updates(offset, stale)

    async def handle_update(self, ctx: Context, update: Update) -> None:
        """Handle one update (default: the ``handler`` given to the constructor)."""
        assert self._handler is not None
        await self._handler(update)

    def report_handler_failure(self, failure: HandlerFailure) -> None:
        """Report a failed handler attempt (default: keep it and log it)."""
        self.handler_failures.append(failure)
        final = "giving up on it" if failure.final else "will retry"
        log.error(
            "update %d: handler failed (attempt %d of %d, %s): %r",
            failure.update_id,
            failure.attempt,
            self.config.max_handler_attempts,
            final,
            failure.exception,
            exc_info=failure.exception,
        )

    # ----------------------------------------------------------------- protocol

    def request_params(self, offset: int | None) -> dict[str, Any]:
        """The poll's query parameters (Bot API: ``offset``, ``timeout``, ``limit``...)."""
        if offset is None:
            return self._fixed_params
        return {"offset": offset, **self._fixed_params}

    def decode(self, response: httpx.Response) -> list[Update]:
        """The updates in a poll's answer, or the failure it means, raised.

        Raises:
            Failure: a typed failure for an error answer (see the module).
            ApiError: an error answer that means a wrong request (becomes ``Crashed``).
        """
        body = _json(response) if response.status_code == 200 else None
        if isinstance(body, dict) and body.get("ok") is True:
            result = body.get("result")
            if isinstance(result, list) and all(isinstance(u, dict) for u in result):
                return result
        if response.status_code == 200:
            raise ServerError(status=200, detail="the answer is not a list of updates")
        raise _shared_failure(response)

    def update_id(self, update: Update) -> int:
        """An update's id (Bot API: ``update_id``).

        Raises:
            ServerError: the update has no integer id in 0..2**63-2 (its
                successor is the next offset, and a negative offset means
                something else to the Bot API).
        """
        update_id = update.get("update_id")
        if (
            isinstance(update_id, bool)
            or not isinstance(update_id, int)
            or not 0 <= update_id < _OFFSET_LIMIT - 1
        ):
            raise ServerError(
                status=200,
                detail=f"an update without an integer update_id in 0..2**63-2: "
                f"{reprlib.repr(update)}",
            )
        return update_id

    # ----------------------------------------------------------------- requests

    async def poll(self) -> list[Update]:
        """One long poll from the current offset: the updates, or a typed failure raised.

        Raises:
            NotRunning: no incarnation is running.
        """
        client = self._poll_client
        if client is None:
            raise NotRunning(self._name or type(self).__name__)
        params = self.request_params(self._offset)
        retried = False
        while True:
            trace = _ConnectionTrace(self.config.connect_timeout)
            try:
                response = await self._send(client, trace, "GET", self.config.url, params=params)
            except _STALE_CONNECTION as error:
                if trace.opened or retried:
                    raise self._transport_failure(error, self.config.read_timeout, trace) from error
                # the server may have closed the kept-alive connection while it was
                # idle: this request never reached it, so sending it again is safe
                retried = True
                self.stats.stale_retries += 1
                continue
            except httpx.HTTPError as error:
                raise self._transport_failure(error, self.config.read_timeout, trace) from error
            updates = self.decode(response)
            self.stats.polls += 1
            return updates

    async def call_api(self, method: str, /, **params: Any) -> Any:
        """Call another API method (``sendMessage``...) through the API client.

        The request is a JSON ``POST`` to ``api_base + method``; it is never
        retried (it may not be idempotent).

        Returns:
            The answer's ``result``.

        Raises:
            NotRunning: no incarnation is running.
            Failure: by the status table (429 ``FloodWait``/``RateLimited``,
                401/404 ``AuthRevoked``, 5xx ``ServerError``), an answer that
                is not the API's (``ServerError``), or a transport failure
                (``ConnectionLost``, ``ProxyFailed``, ...).
            ApiError: any other error answer (400, 403, 409...).
        """
        client = self.api_client
        trace = _ConnectionTrace(self.config.connect_timeout)
        try:
            response = await self._send(client, trace, "POST", method, json=params)
        except httpx.HTTPError as error:
            raise self._transport_failure(error, self.config.api_timeout, trace) from error
        body = _json(response) if response.status_code == 200 else None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if response.status_code == 200:
            raise ServerError(status=200, detail=f"{method}: not an API answer")
        raise _shared_failure(response, per_request=True)

    # ----------------------------------------------------------------- internals

    def _static_params(self) -> dict[str, Any]:
        config = self.config
        timeout = config.poll_timeout
        # Telegram takes whole seconds; fractions are for loopback tests
        params: dict[str, Any] = {
            "timeout": int(timeout) if float(timeout).is_integer() else timeout
        }
        if config.limit is not None:
            params["limit"] = config.limit
        if config.allowed_updates is not None:
            params["allowed_updates"] = json.dumps(list(config.allowed_updates))
        return params

    @contextlib.asynccontextmanager
    async def _open_clients(self) -> AsyncIterator[None]:
        config = self.config
        common: dict[str, Any] = {
            "proxy": self.proxy,
            "verify": self._ssl_context,
            "trust_env": config.trust_env,
        }
        poll = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.write_timeout,
                pool=config.pool_timeout,
            ),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            **common,
        )
        api = httpx.AsyncClient(
            base_url=config.api_base,
            timeout=httpx.Timeout(
                config.api_timeout, connect=config.connect_timeout, pool=config.pool_timeout
            ),
            limits=httpx.Limits(max_connections=config.api_max_connections),
            **common,
        )
        async with poll, api:
            self._poll_client, self._api_client = poll, api
            try:
                yield
            finally:
                self._poll_client = self._api_client = None
                await self._flush_offset()

    async def _save_offset(self) -> None:
        offset = self._offset
        assert offset is not None
        await self.offsets.save(offset)
        self._saved = offset

    async def _flush_offset(self) -> None:
        """Save the offset if the store is behind memory (a save cut short, or per poll)."""
        if self._offset is None or self._offset == self._saved:
            return
        try:
            await self._save_offset()
        except Exception as error:  # the next incarnation tries again
            log.error("could not save offset %d: %r", self._offset, error)

    async def _send(
        self,
        client: httpx.AsyncClient,
        trace: _ConnectionTrace,
        method: str,
        url: str,
        **options: Any,
    ) -> httpx.Response:
        """One request: its connection up within ``connect_timeout``, its answer capped."""
        request = client.build_request(method, url, extensions={"trace": trace}, **options)
        try:
            with trace.scope:
                response = await client.send(request, stream=True)
                try:
                    with trio.move_on_after(self.config.body_timeout) as reading:
                        await _read_capped(response, self.config.max_response_bytes)
                finally:
                    await response.aclose()
                if reading.cancelled_caught:
                    raise _too_slow(response, self.config.body_timeout)
                return response
        except BaseException:
            await trace.abandon()
            raise
        # the trace's deadline passed: the connection was never up
        await trace.abandon()
        after = self.config.connect_timeout
        proxy = self.proxy
        if proxy is not None:
            raise ProxyFailed(
                proxy=redact(proxy),
                cause=f"no tunnel within connect_timeout ({after}s): "
                "the proxy took the connection but did not answer its handshake",
            )
        raise HeartbeatTimeout(after=after)

    def _transport_failure(
        self, error: httpx.HTTPError, read_timeout: float, trace: _ConnectionTrace
    ) -> Failure:
        config = self.config
        if isinstance(error, httpx.PoolTimeout):
            return PoolExhausted(
                detail=f"no connection free within {config.pool_timeout}s (one leaked or in use)"
            )
        proxy = self.proxy
        if proxy is not None and (
            isinstance(error, httpx.ProxyError | httpx.ConnectError | httpx.ConnectTimeout)
            or trace.setting_up  # before the tunnel is up, it is the proxy's failure
        ):
            return ProxyFailed(proxy=redact(proxy), cause=f"{type(error).__name__}: {error}")
        if isinstance(error, httpx.ReadTimeout):
            return HeartbeatTimeout(after=read_timeout)
        if isinstance(error, httpx.ConnectTimeout):
            return HeartbeatTimeout(after=config.connect_timeout)
        if isinstance(error, httpx.TimeoutException):
            return HeartbeatTimeout(after=config.write_timeout)
        return ConnectionLost(reason=f"{type(error).__name__}: {error}")

    def _stale_updates(self, offset: int, stale: list[int]) -> StaleUpdates:
        handled = self.config.on_stale_update is OnStaleUpdate.RESYNC
        log.warning(
            "%s: the server sent %d update(s) below the offset %d (update_id %d..%d): %s",
            self._name or type(self).__name__,
            len(stale),
            offset,
            min(stale),
            max(stale),
            "handled, the offset follows them (RESYNC)" if handled else "dropped (SKIP)",
        )
        return StaleUpdates(
            offset=offset,
            count=len(stale),
            first_id=min(stale),
            last_id=max(stale),
            handled=handled,
        )

    async def _dispatch(self, ctx: Context, update: Update, stale: list[int]) -> None:
        update_id = self.update_id(update)
        if self._offset is not None and update_id < self._offset:
            # the server ignored the offset, or its ids started again lower
            stale.append(update_id)
            self.stats.stale_updates += 1
            if self.config.on_stale_update is OnStaleUpdate.SKIP:
                self.stats.duplicates_dropped += 1
                return
        try:
            if self._direct_handler is not None:
                await self._direct_handler(update)
            else:
                await self.handle_update(ctx, update)
        except Failure:
            raise  # the connection's failure, not the update's: restart, then retry it
        except Exception as error:
            await self._handler_failed(ctx, update, update_id, error)
        else:
            self.stats.updates += 1
        # the offset moves in memory first, with no checkpoint in between: a
        # restart landing in the save below still finds it (see init), and the
        # incarnation's end writes it to the store if the save was cut short
        self._offset = update_id + 1
        if not self._save_each_update:
            return
        if self._memory_store is not None:  # the default store: no await per update
            self._memory_store.offset = self._saved = update_id + 1
        else:
            await self._save_offset()

    async def _handler_failed(
        self, ctx: Context, update: Update, update_id: int, error: Exception
    ) -> None:
        """Report, retry, and in the end skip the update (return) or stop (raise)."""
        config = self.config
        attempt = 1
        while True:
            failure = _failure_in(error)
            if failure is not None:  # a typed failure from a handler's own nursery
                raise failure from error
            self.stats.handler_failures += 1
            final = attempt >= config.max_handler_attempts
            # kept and logged: a raise_for_status() on api_client has the token in its URL
            redact_exception(error)
            self.report_handler_failure(
                HandlerFailure(
                    update_id=update_id,
                    attempt=attempt,
                    exception=error,
                    final=final,
                    time=trio.current_time(),
                )
            )
            if final:
                break
            if config.handler_retry_delay:
                await trio.sleep(config.handler_retry_delay)
            attempt += 1
            try:
                await self.handle_update(ctx, update)
            except Failure:
                raise
            except Exception as again:
                error = again
            else:
                self.stats.updates += 1
                return
        if config.on_handler_failure is OnHandlerFailure.STOP:
            raise UpdateFailed(update_id=update_id, attempts=attempt, cause=repr(error)) from error
        self.stats.skipped += 1
