"""The WebSocket session worker: a trio-websocket client that ends typed, the moment it must.

One incarnation is one connection. ``init`` opens it (TCP, TLS, HTTP upgrade, all
under one ``connect_timeout``) and runs the application's ``on_open`` hook (subscribe,
or resume from the last acknowledged point). Then three tasks serve it:

- the reader drains trio-websocket's queue into the worker's own buffer, so the
  library keeps processing pongs and close frames however slowly the application
  reads; a close frame, or a reset without one, ends the incarnation at once with
  :class:`~workers.ConnectionLost` (event-driven: nothing polls ``closed``);
- the deliverer hands buffered messages, in order, to the application's memory
  channel or ``on_message`` handler;
- the heartbeat sends a ping every ``ping_interval`` and waits ``ping_timeout`` for
  the pong (``ping()`` has no timeout of its own and never returns on a dead link):
  a half-open link ends the incarnation with :class:`~workers.HeartbeatTimeout`.

Backpressure: the worker holds at most ``max_pending`` received messages the
application has not taken yet. Past that it stops reading, so TCP flow control
slows the server down; no message is dropped. While reading is held back the
library cannot see pongs either, so the heartbeat gives no verdict until the
application catches up (it judges the link, not the application). Messages still
buffered when an incarnation ends are delivered first by the next one.

Teardown never waits on a dead peer: after a failure the socket is closed at once;
on a clean stop the worker says goodbye (close code 1000) for at most
``disconnect_timeout`` seconds, within the child's shutdown grace.

Restarts: backoff is a supervisor setting, so :meth:`WebSocketSessionWorker.reconnecting_child_spec`
wraps the worker in a one-child supervisor with :data:`RECONNECT_BACKOFF`
(exponential, capped, jittered: many clients of one restarted server spread out).
"""

from __future__ import annotations

import collections
import functools
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, TypeAlias, cast
from urllib.parse import urlsplit

import attrs
import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, WebSocketConnection

import supervisor
from specs import Backoff

from ._actor import Context, Worker, refused_on_restart
from ._classify import ABNORMAL_CLOSURE, DEFAULT, Classifier, _retry_after, status_failure
from ._exceptions import NotRunning
from ._failures import (
    ConnectionLost,
    Crashed,
    Failure,
    HeartbeatTimeout,
)
from ._mailbox import Registry
from ._redact import (
    install_log_redaction,
    is_secret_name,
    redact,
    redact_repr,
    register_header_secret,
    register_secret_names,
    register_url_secrets,
)

#: A WebSocket message: text or binary.
WebSocketMessage: TypeAlias = str | bytes

#: The close code a worker sends when it is stopped (RFC 6455 "normal closure").
NORMAL_CLOSURE: Final = 1000
#: The close code a worker sends when its own application code failed.
INTERNAL_ERROR: Final = 1011

_NO_CLOSE_FRAME: Final = "connection lost without a close frame"

#: The restart backoff recommended for WebSocket sessions: the first reconnect
#: after 0.5 s plus up to 1.5 s of jitter (a thousand clients of one restarted
#: server arrive over 1.5 s, not in one burst), doubling up to 30 s, forgotten
#: after 30 s of healthy connection.
RECONNECT_BACKOFF: Final = Backoff(
    wait_initial=0.5, wait_max=30.0, wait_jitter=1.5, wait_exp_base=2.0, reset_after=30.0
)


class WebSocketConfigError(ValueError, TypeError):
    """A WebSocket configuration field is invalid (a wrong type or a wrong value).

    Both a ``ValueError`` and a ``TypeError``, so either ``except`` catches it.

    Attributes:
        owner: The configuration class at fault.
        field: The name of the field at fault.
        problem: What is wrong with it.
    """

    def __init__(self, owner: str, field: str, problem: str) -> None:
        self.owner = owner
        self.field = field
        self.problem = problem
        super().__init__(f"{owner}: field {field!r}: {problem}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_seconds(owner: str, field: str, value: object, *, allow_none: bool = False) -> None:
    """Raise :class:`WebSocketConfigError` unless ``value`` is finite seconds > 0."""
    if value is None and allow_none:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type,operator]
        allowed = "None or " if allow_none else ""
        raise WebSocketConfigError(
            owner, field, f"must be {allowed}finite seconds > 0 (got {value!r})"
        )


def _check_count(owner: str, field: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WebSocketConfigError(owner, field, f"must be an integer >= 1 (got {value!r})")


def _to_headers(value: object) -> object:
    """Headers as a tuple of ``(name, value)`` pairs, from a mapping or pairs."""
    if isinstance(value, Mapping):
        return tuple(value.items())
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(tuple(item) if isinstance(item, list | tuple) else item for item in value)
    return value


def _to_strings(value: object) -> object:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(value)
    return value


@attrs.frozen
class _Target:
    """Where a ``ws://``/``wss://`` URL points."""

    host: str
    port: int
    resource: str
    secure: bool
    host_header: str


def _target(owner: str, url: object) -> _Target:
    if not isinstance(url, str):
        raise WebSocketConfigError(owner, "url", f"must be a string (got {type(url).__name__})")
    parts = urlsplit(url)
    shown = redact(url)
    if parts.scheme not in ("ws", "wss"):
        raise WebSocketConfigError(owner, "url", f"must be a ws:// or wss:// URL (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise WebSocketConfigError(owner, "url", f"has an invalid port (got {shown!r})") from None
    host = parts.hostname
    if not host:
        raise WebSocketConfigError(owner, "url", f"has no host (got {shown!r})")
    secure = parts.scheme == "wss"
    port = port if port is not None else (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    named = f"[{host}]" if ":" in host else host
    # RFC 6455 4.1: the port goes in the Host header unless it is the scheme's default
    host_header = named if port == (443 if secure else 80) else f"{named}:{port}"
    return _Target(host, port, resource, secure, host_header)


@attrs.frozen(kw_only=True)
class WebSocketConfig:
    """How a :class:`WebSocketSessionWorker` connects and watches its connection.

    Validated on construction: an invalid field raises :class:`WebSocketConfigError`
    naming it.

    Args:
        url: A ``ws://`` or ``wss://`` URL.
        ping_interval: Seconds between heartbeat pings; ``None`` for no heartbeat
            (a half-open link is then never noticed).
        ping_timeout: Seconds a ping may wait for its pong. A half-open link is
            noticed within ``ping_interval + ping_timeout``.
        connect_timeout: Seconds for the whole opening: TCP connect, TLS and the
            HTTP upgrade (a server that accepts TCP but never answers the upgrade
            is given up on after this, with :class:`~workers.HeartbeatTimeout`).
        disconnect_timeout: Seconds a clean stop waits for the server to answer
            the close frame; the socket is closed either way.
        message_queue_size: trio-websocket's own queue. The worker drains it
            continuously, so a small queue does not block pongs.
        max_pending: Received messages the application has not taken yet that
            the worker holds; past that it stops reading from the socket.
        max_message_size: The largest message accepted (bigger: the connection
            is closed with 1009).
        ssl_context: For ``wss://`` URLs (default: the system's trust store).
        extra_headers: Added to the HTTP upgrade request (e.g. an Authorization
            header): a mapping or ``(name, value)`` pairs of strings.
        subprotocols: Offered to the server, in order of preference.
        secret_names: Query parameters of ``url`` and headers of ``extra_headers``
            whose values are secrets, besides the usual ones (``token``,
            ``access_token``, ``api_key``, ``Authorization``, ``Cookie``...; see
            ``workers.DEFAULT_SECRET_NAMES``): they are redacted from reprs, errors
            and every log record of the workers and the libraries they drive.
    """

    url: str = attrs.field(repr=redact_repr)
    ping_interval: float | None = 5.0
    ping_timeout: float = 5.0
    connect_timeout: float = 10.0
    disconnect_timeout: float = 0.5
    message_queue_size: int = 16
    max_pending: int = 1024
    max_message_size: int = 2**20
    ssl_context: ssl.SSLContext | None = None
    extra_headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_to_headers, repr=redact_repr
    )
    subprotocols: tuple[str, ...] = attrs.field(default=(), converter=_to_strings)
    secret_names: tuple[str, ...] = attrs.field(default=(), converter=_to_strings)

    def __attrs_post_init__(self) -> None:
        owner = type(self).__name__
        self._register_secrets(owner)
        target = _target(owner, self.url)
        _check_seconds(owner, "ping_interval", self.ping_interval, allow_none=True)
        for field in ("ping_timeout", "connect_timeout", "disconnect_timeout"):
            _check_seconds(owner, field, getattr(self, field))
        for field in ("message_queue_size", "max_pending", "max_message_size"):
            _check_count(owner, field, getattr(self, field))
        if self.ssl_context is not None:
            if not isinstance(self.ssl_context, ssl.SSLContext):
                raise WebSocketConfigError(
                    owner, "ssl_context", f"must be an ssl.SSLContext (got {self.ssl_context!r})"
                )
            if not target.secure:
                raise WebSocketConfigError(owner, "ssl_context", "is only used with wss:// URLs")
        headers = self.extra_headers
        if not isinstance(headers, tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
            for pair in headers
        ):
            # the values are not shown: one of them may be a token
            raise WebSocketConfigError(
                owner,
                "extra_headers",
                f"must be a mapping or (name, value) strings (got {_shapes(headers)})",
            )
        protocols = self.subprotocols
        if not isinstance(protocols, tuple) or not all(isinstance(p, str) and p for p in protocols):
            raise WebSocketConfigError(
                owner, "subprotocols", f"must be non-empty strings (got {protocols!r})"
            )

    @property
    def target(self) -> _Target:
        """Host, port, resource and scheme of :attr:`url`."""
        return _target(type(self).__name__, self.url)

    def _register_secrets(self, owner: str) -> None:
        """Make the URL's and headers' secrets known before any message could show them."""
        names = self.secret_names
        if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
            raise WebSocketConfigError(
                owner, "secret_names", f"must be non-empty strings (got {names!r})"
            )
        register_secret_names(*names)
        if isinstance(self.url, str):
            register_url_secrets(self.url)
        if isinstance(self.extra_headers, tuple):
            for pair in self.extra_headers:
                if (
                    isinstance(pair, tuple)
                    and len(pair) == 2
                    and all(isinstance(part, str) for part in pair)
                    and is_secret_name(pair[0])
                ):
                    register_header_secret(pair[1])
        # trio-websocket logs the upgrade request at DEBUG
        install_log_redaction()


def _shapes(headers: object) -> str:
    """What headers were given, by type only."""
    if not isinstance(headers, tuple):
        return type(headers).__name__
    kinds = (
        f"({', '.join(type(x).__name__ for x in pair)})"
        if isinstance(pair, tuple)
        else type(pair).__name__
        for pair in headers
    )
    return f"[{', '.join(kinds)}]"


@attrs.define(eq=False)
class WebSocketSession:
    """One open connection, as the application sees it (a runtime record).

    Attributes:
        connection: trio-websocket's connection (an escape hatch: prefer
            :meth:`send`; do not read from it, the worker does).
        url: Where it is connected.
        incarnation: The worker incarnation it belongs to (1, 2, ...).
        resume_from: The worker's ``last_ack`` when the session opened: where
            an ``on_open`` hook asks the server to resume from.
        opened_at: ``trio.current_time()`` when the upgrade completed.
        subprotocol: The subprotocol the server chose, if any.
        received: Messages received on this session.
        last_received_at: When the last one arrived.
        last_pong_rtt: The round trip of the last answered heartbeat ping.
        held_back: Whether reading is paused because the application has
            ``max_pending`` messages it has not taken.
    """

    connection: WebSocketConnection
    url: str = attrs.field(repr=redact_repr)
    incarnation: int
    resume_from: Any
    opened_at: float
    subprotocol: str | None = None
    received: int = 0
    last_received_at: float | None = None
    last_pong_rtt: float | None = None
    held_back: bool = False

    async def send(self, message: WebSocketMessage) -> None:
        """Send a message on this session.

        Raises:
            trio_websocket.ConnectionClosed: it has closed.
            TypeError: not ``str`` or ``bytes``.
        """
        _check_message(message)
        await self.connection.send_message(message)


def _check_message(message: object) -> None:
    if not isinstance(message, str | bytes):
        msg = f"a WebSocket message is str or bytes (got {type(message).__name__})"
        raise TypeError(msg)


def close_failure(reason: CloseReason | None) -> ConnectionLost:
    """The failure a closed connection means: its close code, or 1006 without one."""
    if reason is None or (reason.code == ABNORMAL_CLOSURE and not reason.reason):
        return ConnectionLost(code=ABNORMAL_CLOSURE, reason=_NO_CLOSE_FRAME)
    return ConnectionLost(code=int(reason.code), reason=reason.reason or "")


def handshake_failure(rejected: ConnectionRejected) -> Failure:
    """The failure a rejected upgrade means, by the one status table (``STATUS_FAILURES``).

    401/403/404 mean the credentials (or the endpoint they name) are refused
    (:class:`~workers.AuthRevoked`: a TRANSIENT worker stays down); 429 is
    :class:`~workers.RateLimited` (honouring ``Retry-After``); 409 is
    :class:`~workers.Conflict`; any other status is a :class:`~workers.ServerError`
    with it.
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in rejected.headers or ()}
    body = (rejected.body or b"")[:200].decode("utf-8", "replace").strip()
    return status_failure(rejected.status_code, retry_after=_retry_after(headers), detail=body)


def websocket_session_rule(exc: BaseException) -> Failure | None:
    """Classifier rule: trio-websocket's closes and rejected upgrades, by code and status."""
    if isinstance(exc, ConnectionClosed):
        return close_failure(exc.reason)
    if isinstance(exc, ConnectionRejected):
        return handshake_failure(exc)
    return None


class _LibraryHost:
    """Hosts trio-websocket's reader task, shielded, until the session ends it.

    Shielded so that on a clean stop the reader still runs while the worker waits
    for the server's answer to its close frame; the session cancels :attr:`scope`
    when it is done. It is also what the library is given as its "nursery"
    (``wrap_client_stream`` only calls ``start_soon``), which lets the worker see
    the reader end: a server that closes during the upgrade is noticed at once
    instead of at ``connect_timeout``, and a rejection arrives as a value.
    """

    def __init__(self) -> None:
        self.scope = trio.CancelScope(shield=True)
        self.ready = trio.Event()
        self.exited = trio.Event()
        self.error: Exception | None = None
        self.on_exit: Callable[[], None] | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.ready.set()
                await trio.sleep_forever()

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """What trio-websocket calls to start its reader."""
        assert self._nursery is not None
        self._nursery.start_soon(self._reader, async_fn, *args, name="trio-websocket reader")

    async def _reader(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await async_fn(*args)
        except Exception as error:  # a rejected upgrade is raised here by the library
            self.error = error
        finally:
            self.exited.set()
            if self.on_exit is not None:
                self.on_exit()


@attrs.define(eq=False)
class _Run:
    """One incarnation's connection and the bookkeeping of its tasks."""

    session: WebSocketSession
    stream: trio.abc.Stream
    host: _LibraryHost
    tasks: trio.Nursery | None = None
    failure: Exception | None = None
    stalls: int = 0

    def fail(self, error: Exception) -> None:
        """End the session with ``error``, unless it already has a reason."""
        if self.failure is None:
            self.failure = error
        if self.tasks is not None:
            self.tasks.cancel_scope.cancel()


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # loading the system's trust store takes milliseconds: once, not per reconnect
    return ssl.create_default_context()


async def _open_stream(
    target: _Target, context: ssl.SSLContext | None
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    try:
        tcp = await trio.open_tcp_stream(target.host, target.port)
    except OSError as error:
        # trio reports a refused connect as a bare OSError ("all attempts to
        # connect ... failed", no errno) with the real errors as its cause
        raise ConnectionLost(reason=f"connect to {target.host}:{target.port}: {error}") from error
    if not target.secure:
        return tcp
    stream = trio.SSLStream(
        tcp,
        context or _default_tls(),
        server_hostname=target.host,
        https_compatible=True,
    )
    try:
        # the library would hide a TLS failure until connect_timeout: find it now
        await stream.do_handshake()
    except trio.BrokenResourceError as error:
        await trio.aclose_forcefully(stream)
        cause = error.__cause__ or error
        raise ConnectionLost(reason=f"TLS handshake failed: {cause}") from error
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _raise(failure: BaseException) -> None:
    raise failure


async def _guarded(run: _Run, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run one of a session's tasks: its failure is the session's; the first one wins."""
    try:
        await fn(*args)
    except Exception as error:
        run.fail(error)


class WebSocketSessionWorker(Worker):
    """A supervised WebSocket client session (trio-websocket), ending typed at once.

    Each incarnation opens a fresh connection in ``init``; the supervisor starts
    the next sibling once it is open and ``on_open`` has run. The incarnation ends
    with :class:`~workers.ConnectionLost` ``(code, reason)`` on a close frame (1006
    for a reset or EOF without one), :class:`~workers.HeartbeatTimeout` on a
    half-open link or an unanswered upgrade, :class:`~workers.AuthRevoked` on a
    401/403/404 upgrade rejection, and another typed failure for other statuses
    (:func:`handshake_failure`). A 401/403/404 fails the first start
    (``FailedToStartChild``); on a restart it ends the new incarnation instead,
    so a TRANSIENT worker stays down rather than have its failed restart retried.

    Receiving: give ``deliver_to`` (a memory channel the application owns and
    reads; it is never closed by the worker and outlives incarnations) or
    ``on_message`` (awaited per message, in order), or override
    :meth:`handle_message`. A message is taken off the worker's buffer only once
    delivered: if an incarnation ends first it is offered again by the next one
    (a message whose handler raised is not offered again).

    Sending: ``await worker.send(msg)`` from any task, or through the mailbox:
    ``registry.cast(name, msg)`` / ``registry.call(name, msg)`` (the call returns
    once the message is written). Override ``handle_call``/``handle_cast`` for
    other requests and pass messages on to ``super()``.

    Resuming: the application records its progress with :meth:`acknowledge`;
    each session's ``resume_from`` is the last acknowledged point, so ``on_open``
    can ask the server to resubscribe or replay from there.

    Args:
        config: The URL, timeouts and limits.
        deliver_to: Where received messages go.
        on_message: Called with each received message (instead of ``deliver_to``).
        on_open: Called with each new :class:`WebSocketSession` once it is open
            and served, before the worker reports ready.
        name: The name it registers under (default: its child id).
        registry: Where it registers (default: ``workers.registry``).

    Raises:
        TypeError: ``config`` is not a :class:`WebSocketConfig`, or neither or both
            of ``deliver_to`` and ``on_message`` are given (unless
            :meth:`handle_message` is overridden).
    """

    classifier: ClassVar[Classifier] = DEFAULT.extend(websocket_session_rule)
    reconnect_backoff: ClassVar[Backoff | None] = RECONNECT_BACKOFF

    def __init__(
        self,
        config: WebSocketConfig,
        *,
        deliver_to: trio.MemorySendChannel[WebSocketMessage] | None = None,
        on_message: Callable[[WebSocketMessage], Awaitable[None]] | None = None,
        on_open: Callable[[WebSocketSession], Awaitable[None]] | None = None,
        name: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        super().__init__(name=name, registry=registry)
        if not isinstance(config, WebSocketConfig):
            msg = f"config must be a WebSocketConfig (got {config!r})"
            raise TypeError(msg)
        overridden = type(self).handle_message is not WebSocketSessionWorker.handle_message
        self._custom_delivery = overridden
        if deliver_to is not None and on_message is not None:
            msg = "give deliver_to or on_message, not both"
            raise TypeError(msg)
        if deliver_to is None and on_message is None and not overridden:
            msg = "received messages need somewhere to go: give deliver_to= or on_message="
            raise TypeError(msg)
        self.config = config
        self.deliver_to = deliver_to
        self.on_message = on_message
        self.on_open = on_open
        #: The last point the application acknowledged (see :meth:`acknowledge`).
        self.last_ack: Any = None
        # received, not yet delivered: kept across incarnations, oldest first
        self._pending: collections.deque[WebSocketMessage] = collections.deque()
        self._arrived = trio.lowlevel.ParkingLot()
        self._taken = trio.lowlevel.ParkingLot()
        self._session: WebSocketSession | None = None
        self._label = name or "websocket"

    # ---------------------------------------------------------- the application's API

    @property
    def session(self) -> WebSocketSession | None:
        """The open session, or ``None`` between incarnations."""
        return self._session

    @property
    def pending(self) -> int:
        """Messages received but not yet taken by the application."""
        return len(self._pending)

    def acknowledge(self, point: Any) -> None:
        """Record how far the application got; the next session resumes from here."""
        self.last_ack = point

    async def send(self, message: WebSocketMessage) -> None:
        """Send a message on the current session, from any task.

        Raises:
            NotRunning: no session is open (between incarnations), or it closed
                while sending (its ``__cause__`` is the library's exception).
            TypeError: not ``str`` or ``bytes``.
        """
        _check_message(message)
        session = self._session
        if session is None:
            raise NotRunning(self._label)
        try:
            await session.connection.send_message(message)
        except ConnectionClosed as closed:
            raise NotRunning(self._label) from closed

    # --------------------------------------------------------------- overridables

    async def handle_message(self, ctx: Context, message: WebSocketMessage) -> None:
        """Deliver one received message (default: ``on_message`` or ``deliver_to``).

        It may wait (the application is busy): messages queue up behind it, up
        to ``max_pending``. An exception ends the incarnation (``Crashed``).
        """
        if self.on_message is not None:
            await self.on_message(message)
            return
        assert self.deliver_to is not None
        try:
            await self.deliver_to.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            # not a network failure: the application stopped listening
            raise Crashed(exception=error) from error

    async def session_opened(self, ctx: Context, session: WebSocketSession) -> None:
        """Run the application's ``on_open`` hook (subscribe, resume) on a new session."""
        if self.on_open is not None:
            await self.on_open(session)

    async def handle_cast(self, ctx: Context, message: Any) -> None:
        """Send a ``str``/``bytes`` message; anything else goes to the base class."""
        if isinstance(message, str | bytes):
            await self._send_from_mailbox(message)
        else:
            await super().handle_cast(ctx, message)

    async def handle_call(self, ctx: Context, request: Any) -> Any:
        """Send a ``str``/``bytes`` message and return ``None`` once it is written."""
        if isinstance(request, str | bytes):
            await self._send_from_mailbox(request)
            return None
        return await super().handle_call(ctx, request)

    # ------------------------------------------------------------------ lifecycle

    async def init(self, ctx: Context) -> None:
        """Open the connection (bounded by ``connect_timeout``) and run ``on_open``."""
        self._label = ctx.mailbox.name
        host = _LibraryHost()
        ctx.nursery.start_soon(host.run, name=f"{self._label}: websocket host")
        try:
            connection, stream = await self._open(host)
        except Failure as failure:
            if refused_on_restart(ctx, failure):  # 401/403/404, 409
                ctx.nursery.start_soon(_raise, failure)
                return
            raise
        session = WebSocketSession(
            connection=connection,
            url=self.config.url,
            incarnation=ctx.child.incarnation,
            resume_from=self.last_ack,
            opened_at=trio.current_time(),
            subprotocol=connection.subprotocol,
        )
        run = _Run(session=session, stream=stream, host=host)
        self._session = session
        # from here on _serve owns the connection and closes it, however this ends
        ctx.nursery.start_soon(self._serve, ctx, run, name=f"{self._label}: websocket session")
        try:
            await self.session_opened(ctx, session)
        except ConnectionClosed:
            # closed under on_open: the reader reports it, with the close code
            await trio.sleep_forever()

    async def _open(self, host: _LibraryHost) -> tuple[WebSocketConnection, trio.abc.Stream]:
        """TCP, TLS and the upgrade, under one deadline; nothing is left open on failure."""
        config = self.config
        target = config.target
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.CancelScope(deadline=trio.current_time() + config.connect_timeout) as scope:
                stream = await _open_stream(target, config.ssl_context)
                await host.ready.wait()
                # the library's reader ending (a rejection, an EOF) ends the wait at once
                host.on_exit = scope.cancel
                connection = await trio_websocket.wrap_client_stream(
                    cast("trio.Nursery", host),
                    stream,
                    target.host_header,
                    target.resource,
                    subprotocols=config.subprotocols,
                    extra_headers=[(k.encode(), v.encode()) for k, v in config.extra_headers],
                    message_queue_size=config.message_queue_size,
                    max_message_size=config.max_message_size,
                )
            host.on_exit = None
            if scope.cancelled_caught:
                if isinstance(host.error, ConnectionRejected):
                    raise handshake_failure(host.error) from host.error
                if host.error is not None:
                    raise host.error
                if host.exited.is_set():
                    raise ConnectionLost(
                        code=ABNORMAL_CLOSURE, reason="connection lost during the opening handshake"
                    )
                raise HeartbeatTimeout(after=config.connect_timeout)
        except BaseException:
            host.scope.cancel()
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise
        assert stream is not None
        return connection, stream

    # -------------------------------------------------------------- the session

    async def _serve(self, ctx: Context, run: _Run) -> None:
        run.host.on_exit = lambda: self._library_exited(run)
        try:
            async with trio.open_nursery() as tasks:
                run.tasks = tasks
                tasks.start_soon(_guarded, run, self._read, run)
                tasks.start_soon(_guarded, run, self._deliver, ctx)
                if self.config.ping_interval is not None:
                    tasks.start_soon(_guarded, run, self._heartbeat, run)
                if run.host.exited.is_set():
                    self._library_exited(run)
        finally:
            await self._close(run)
        if run.failure is not None:
            raise run.failure

    @staticmethod
    def _library_exited(run: _Run) -> None:
        # a normal end closes the library's queue, which the reader reports with
        # the close code; only an error of the library's own needs reporting here
        if run.host.error is not None:
            run.fail(run.host.error)

    async def _read(self, run: _Run) -> None:
        """Drain the library's queue into the worker's buffer; a close ends the session."""
        session = run.session
        limit = self.config.max_pending
        while True:
            if len(self._pending) >= limit:
                session.held_back = True
                run.stalls += 1
                while len(self._pending) >= limit:
                    await self._taken.park()
                session.held_back = False
            try:
                message = await session.connection.get_message()
            except ConnectionClosed as closed:
                raise close_failure(closed.reason) from closed
            session.received += 1
            session.last_received_at = trio.current_time()
            self._pending.append(message)
            self._arrived.unpark_all()

    async def _deliver(self, ctx: Context) -> None:
        """Hand buffered messages to the application, in order, each once delivered."""
        while True:
            while not self._pending:
                await self._arrived.park()
            message = self._pending[0]
            try:
                await self.handle_message(ctx, message)
            except Exception:
                # not offered again: a message that breaks its handler would
                # otherwise crash every incarnation after this one too
                self._pending.popleft()
                self._taken.unpark_all()
                raise
            self._pending.popleft()
            self._taken.unpark_all()

    async def _heartbeat(self, run: _Run) -> None:
        """Ping every ``ping_interval``; no pong within ``ping_timeout`` ends the session."""
        interval = self.config.ping_interval
        timeout = self.config.ping_timeout
        assert interval is not None
        connection = run.session.connection
        due = trio.current_time() + interval
        while True:
            await trio.sleep_until(due)
            sent = trio.current_time()
            due = sent + interval
            if run.session.held_back:
                continue  # the library cannot see pongs now: no verdict on the link
            stalls = run.stalls
            with trio.move_on_after(timeout) as waited:
                try:
                    await connection.ping()
                except ConnectionClosed:
                    return  # the reader reports the close, with its code
            if not waited.cancelled_caught:
                run.session.last_pong_rtt = trio.current_time() - sent
                continue
            if connection.closed is not None:
                return
            if run.session.held_back or run.stalls != stalls:
                continue  # the application held the reader back, not the link
            raise HeartbeatTimeout(after=timeout)

    async def _send_from_mailbox(self, message: WebSocketMessage) -> None:
        session = self._session
        try:
            if session is None:
                raise ConnectionClosed(None)
            await session.connection.send_message(message)
        except ConnectionClosed:
            # the reader is about to end this incarnation with the close code;
            # failing here too would only race it with a vaguer reason
            await trio.sleep_forever()

    async def _close(self, run: _Run) -> None:
        """Tear the connection down: say goodbye on a healthy link, never wait on a dead one."""
        if self._session is run.session:
            self._session = None
        self._flush_nowait()
        connection = run.session.connection
        failure = run.failure
        link_lost = isinstance(failure, ConnectionLost | HeartbeatTimeout)
        try:
            if not link_lost and connection.closed is None:
                code = NORMAL_CLOSURE if failure is None else INTERNAL_ERROR
                with (
                    supervisor.shutdown_grace(),
                    trio.move_on_after(self.config.disconnect_timeout),
                ):
                    await connection.aclose(code, None if failure is None else "internal error")
        finally:
            # whatever cut the goodbye short, the library's reader and the socket end now
            run.host.scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(run.stream)

    def _flush_nowait(self) -> None:
        """Hand what fits to the application's channel now, rather than after the restart delay."""
        channel = self.deliver_to
        if (
            channel is None
            or type(self).handle_message is not WebSocketSessionWorker.handle_message
        ):
            return
        while self._pending:
            try:
                channel.send_nowait(self._pending[0])
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            self._pending.popleft()
