"""A loopback WebSocket server that fails on demand, on trio-websocket (test-only).

:func:`open_websocket_test_server` runs trio-websocket's own server side on
127.0.0.1 and makes it misbehave the ways a client must survive: close with a
chosen code after an idle time (or whenever told), drop TCP without a close
frame (FIN or RST), reject the upgrade with a status, accept TCP but never answer
the upgrade, and stop and start again on the same port. It records what clients
sent and when they connected. What it does with each new connection is a
validated :class:`WebSocketServerBehaviour`; a handler of your own can replace the
session. A half-open link (TCP up, nothing passing) needs a relay in front of it
(``_relay``): a trio-websocket server answers pings by itself as long as it reads.

Example::

    async with open_websocket_test_server(
        WebSocketServerBehaviour(close_after_idle=0.2, close_code=1001)
    ) as server, open_tcp_relay(server.url) as relay:
        ...  # connect to relay.url; relay.freeze() black-holes the link
"""

from __future__ import annotations

import contextlib
import itertools
import math
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Final, TypeAlias

import attrs
import trio
import trio_websocket
import wsproto.events
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.connection import ConnectionState

from workers import WebSocketConfigError

from ._tls import loopback_server_ssl_context

__all__ = [
    "Handler",
    "Message",
    "WebSocketServerBehaviour",
    "WebSocketServerConnection",
    "WebSocketTestServer",
    "open_websocket_test_server",
]

Message: TypeAlias = str | bytes

#: A per-connection session: what the server does with each accepted client.
Handler: TypeAlias = Callable[["WebSocketServerConnection"], Awaitable[None]]

_LOOPBACK: Final = "127.0.0.1"
# the server reads continuously, but a roomy queue keeps pongs flowing even when
# a custom handler does not
_SERVER_QUEUE: Final = 64
# how long the server waits for a client to answer its close frame
_SERVER_CLOSE_WAIT: Final = 1.0


def _to_tuple(value: object) -> object:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _check_idle_seconds(owner: str, field: str, value: object) -> None:
    if value is None:
        return
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        detail = f"must be None or finite seconds > 0 (got {value!r})"
        raise WebSocketConfigError(owner, field, detail)


def _check_close_code(owner: str, field: str, code: object) -> None:
    # RFC 6455 7.4: 1005, 1006 and 1015 are never sent in a close frame
    if (
        not isinstance(code, int)
        or isinstance(code, bool)
        or not 1000 <= code <= 4999
        or code in (1004, 1005, 1006, 1015)
    ):
        raise WebSocketConfigError(owner, field, f"must be a sendable close code (got {code!r})")


@attrs.frozen(kw_only=True)
class WebSocketServerBehaviour:
    """What a :class:`WebSocketTestServer` does with each new connection.

    Validated on construction (:class:`~workers.WebSocketConfigError` names the
    field). A server reads its behaviour when a client connects, so replacing
    ``server.behaviour`` affects the next connections, not the open ones.

    Args:
        reject_status: Reject the upgrade with this HTTP status (e.g. 401).
        reject_headers: Headers sent with the rejection (e.g. ``Retry-After``).
        reject_body: The rejection's body.
        answer_upgrade: ``False``: accept TCP, read the upgrade request, never
            answer it.
        greeting: Messages sent to each client right after the upgrade.
        echo: Send every received message back.
        close_after_idle: Seconds without a message from the client after which
            the server closes with ``close_code``/``close_reason``.
        close_code: The code of that idle close.
        close_reason: Its reason.
    """

    reject_status: int | None = None
    reject_headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_to_tuple)
    reject_body: bytes = b""
    answer_upgrade: bool = True
    greeting: tuple[Message, ...] = attrs.field(default=(), converter=_to_tuple)
    echo: bool = False
    close_after_idle: float | None = None
    close_code: int = 1000
    close_reason: str = ""

    def __attrs_post_init__(self) -> None:
        owner = type(self).__name__
        status = self.reject_status
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 300 <= status <= 599
        ):
            raise WebSocketConfigError(
                owner, "reject_status", f"must be None or an HTTP status 300-599 (got {status!r})"
            )
        headers = self.reject_headers
        if not isinstance(headers, tuple) or not all(
            isinstance(h, tuple) and len(h) == 2 and all(isinstance(s, str) for s in h)
            for h in headers
        ):
            raise WebSocketConfigError(
                owner, "reject_headers", f"must be (name, value) strings (got {headers!r})"
            )
        if not isinstance(self.reject_body, bytes):
            raise WebSocketConfigError(
                owner, "reject_body", f"must be bytes (got {self.reject_body!r})"
            )
        for field in ("answer_upgrade", "echo"):
            if not isinstance(getattr(self, field), bool):
                raise WebSocketConfigError(
                    owner, field, f"must be a bool (got {getattr(self, field)!r})"
                )
        greeting = self.greeting
        if not isinstance(greeting, tuple) or not all(isinstance(m, str | bytes) for m in greeting):
            raise WebSocketConfigError(
                owner, "greeting", f"must be str or bytes messages (got {greeting!r})"
            )
        _check_idle_seconds(owner, "close_after_idle", self.close_after_idle)
        _check_close_code(owner, "close_code", self.close_code)
        if not isinstance(self.close_reason, str):
            raise WebSocketConfigError(
                owner, "close_reason", f"must be a string (got {self.close_reason!r})"
            )


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


async def _abort(stream: trio.abc.Stream, *, reset: bool) -> None:
    """Close a TCP stream at once: a FIN, or with ``reset`` an RST."""
    sock = _socket_of(stream)
    if reset and sock is not None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)


def _no_pong_once_closing(websocket: WebSocketConnection) -> None:
    """Make the library drop a ping's answer once the connection is closing.

    trio-websocket's reader answers each ping. A ping it reads after the
    server's close frame went out (the client sent it before it saw the
    close) is answered in state ``LOCAL_CLOSING``, which wsproto refuses with
    ``LocalProtocolError``: the reader, then the whole server, would crash
    (trio-websocket issue 184). Nothing follows a close frame (RFC 6455
    5.5.1), so that pong is not sent; the close handshake goes on.
    """
    protocol = websocket._wsproto  # the library answers pings through it, nowhere else
    send = protocol.send

    def send_unless_closing(event: wsproto.events.Event) -> bytes:
        if isinstance(event, wsproto.events.Pong) and protocol.state is not ConnectionState.OPEN:
            return b""
        return send(event)

    protocol.send = send_unless_closing  # type: ignore[method-assign]


@attrs.define(eq=False)
class WebSocketServerConnection:
    """One accepted client, as the server sees it.

    Attributes:
        number: 1 for the server's first connection, 2 for the next, ...
        websocket: trio-websocket's server-side connection.
        path: The requested resource (path and query).
        headers: The upgrade request's headers, names in lower case.
        subprotocol: The subprotocol chosen (the client's first offer, if any).
        opened_at: ``trio.current_time()`` when the upgrade was answered.
        received: Messages received (by :meth:`get_message`), in order.
        closed_at: When the server closed or dropped it, if it did.
        peer_close_code: The code of the client's close frame, if it sent one.
        ended: Set once the connection is over, whoever ended it.
    """

    number: int
    websocket: WebSocketConnection
    path: str
    headers: dict[str, str]
    subprotocol: str | None
    opened_at: float
    received: list[Message] = attrs.Factory(list)
    closed_at: float | None = None
    peer_close_code: int | None = None
    ended: trio.Event = attrs.Factory(trio.Event)
    _stream: trio.abc.Stream | None = None
    _scope: trio.CancelScope | None = None
    _server: WebSocketTestServer | None = None

    async def get_message(self) -> Message:
        """The client's next message (recorded here and on the server).

        Raises:
            trio_websocket.ConnectionClosed: the connection is closed.
        """
        try:
            message = await self.websocket.get_message()
        except ConnectionClosed as closed:
            if closed.reason is not None and self.closed_at is None:
                self.peer_close_code = int(closed.reason.code)
            raise
        self.received.append(message)
        if self._server is not None:
            self._server.received.append(message)
            self._server._changed.unpark_all()
        return message

    async def wait_received(self, count: int) -> None:
        """Wait until :meth:`get_message` has received ``count`` messages in all."""
        assert self._server is not None
        while len(self.received) < count:
            await self._server._changed.park()

    async def send(self, message: Message) -> None:
        """Send a message to the client."""
        await self.websocket.send_message(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait (briefly) for the client's answer, close TCP."""
        if self.closed_at is None:
            self.closed_at = trio.current_time()
        with trio.move_on_after(_SERVER_CLOSE_WAIT):
            await self.websocket.aclose(code, reason or None)
        self._end()
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    async def drop(self, *, reset: bool = False) -> None:
        """Close TCP without a close frame: a FIN, or with ``reset`` an RST."""
        if self.closed_at is None:
            self.closed_at = trio.current_time()
        self._end()
        if self._stream is not None:
            await _abort(self._stream, reset=reset)

    def _end(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


@attrs.define(eq=False)
class _Pending:
    """A TCP connection not (yet) upgraded, so stop() can drop it too."""

    stream: trio.abc.Stream
    scope: trio.CancelScope


class WebSocketTestServer:
    """A loopback WebSocket server (trio-websocket) with faults on demand.

    Not constructed directly: see :func:`open_websocket_test_server`.

    Attributes:
        behaviour: What the server does with new connections (replaceable).
        received: Every message any client sent, in arrival order.
        accepted_at: ``trio.current_time()`` of every accepted upgrade.
        tcp_connections: TCP connections accepted, upgraded or not.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        behaviour: WebSocketServerBehaviour,
        handler: Handler | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        if not isinstance(behaviour, WebSocketServerBehaviour):
            msg = f"behaviour must be a WebSocketServerBehaviour (got {behaviour!r})"
            raise TypeError(msg)
        self.behaviour = behaviour
        self.received: list[Message] = []
        self.accepted_at: list[float] = []
        self.tcp_connections = 0
        self._nursery = nursery
        self._handler = handler
        self._ssl_context = ssl_context
        self._port = 0
        self._numbers = itertools.count(1)
        self._connections: dict[int, WebSocketServerConnection] = {}
        self._pending: dict[int, _Pending] = {}
        self._listening: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None
        # woken on every accept, end and received message
        self._changed = trio.lowlevel.ParkingLot()

    # ------------------------------------------------------------------ views

    @property
    def port(self) -> int:
        """The port it listens on (the same across stop/start)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/`` (``wss://`` with TLS)."""
        scheme = "ws" if self._ssl_context is None else "wss"
        return f"{scheme}://{_LOOPBACK}:{self._port}/"

    @property
    def listening(self) -> bool:
        """Whether it accepts connections (between :meth:`start` and :meth:`stop`)."""
        return self._listening is not None

    @property
    def connections(self) -> tuple[WebSocketServerConnection, ...]:
        """The open WebSocket connections, oldest first."""
        return tuple(self._connections.values())

    @property
    def accepted(self) -> int:
        """How many upgrades it has accepted in all."""
        return len(self.accepted_at)

    async def wait_accepted(self, count: int) -> None:
        """Wait until it has accepted ``count`` upgrades in all."""
        while self.accepted < count:
            await self._changed.park()

    async def wait_connected(self, count: int) -> None:
        """Wait until ``count`` WebSocket connections are open at once."""
        while len(self._connections) < count:
            await self._changed.park()

    async def wait_disconnected(self) -> None:
        """Wait until no WebSocket connection is open."""
        while self._connections:
            await self._changed.park()

    # ---------------------------------------------------------------- control

    async def start(self) -> None:
        """Listen (again, on the same port once it has one).

        Raises:
            RuntimeError: it is already listening.
        """
        if self._listening is not None:
            msg = "the server is already listening"
            raise RuntimeError(msg)
        tcp = await trio.open_tcp_listeners(self._port, host=_LOOPBACK)
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if self._ssl_context is not None:
            listeners = [trio.SSLListener(t, self._ssl_context, https_compatible=True) for t in tcp]
        self._port = tcp[0].socket.getsockname()[1]
        self._listening = scope = trio.CancelScope()
        self._stopped = stopped = trio.Event()
        self._nursery.start_soon(self._accept, listeners, scope, stopped)

    async def stop(self, code: int | None = None, reason: str = "") -> None:
        """Stop listening and end every connection: close frames with ``code``, else drops."""
        scope, stopped = self._listening, self._stopped
        self._listening = None
        if scope is not None and stopped is not None:
            scope.cancel()
            await stopped.wait()  # the listening socket is closed: the port is free
        for pending in list(self._pending.values()):
            pending.scope.cancel()
            await _abort(pending.stream, reset=False)
        if code is None:
            await self.drop_all()
        else:
            await self.close_all(code, reason)

    async def restart(self, code: int | None = None, reason: str = "") -> None:
        """:meth:`stop` then :meth:`start` on the same port."""
        await self.stop(code, reason)
        await self.start()

    async def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every open connection with a close frame (concurrently)."""
        async with trio.open_nursery() as nursery:
            for connection in self.connections:
                nursery.start_soon(connection.close, code, reason)

    async def drop_all(self, *, reset: bool = False) -> None:
        """Close every open connection's TCP without a close frame."""
        for connection in self.connections:
            await connection.drop(reset=reset)

    async def broadcast(self, message: Message) -> None:
        """Send a message to every open connection."""
        for connection in self.connections:
            with contextlib.suppress(ConnectionClosed):  # it is leaving anyway
                await connection.send(message)

    # -------------------------------------------------------------- internals

    async def _accept(
        self,
        listeners: list[trio.abc.Listener[trio.abc.Stream]],
        scope: trio.CancelScope,
        stopped: trio.Event,
    ) -> None:
        try:
            with scope:
                # serve_listeners closes the listeners when it is cancelled
                await trio.serve_listeners(
                    self._serve_tcp, listeners, handler_nursery=self._nursery
                )
        finally:
            stopped.set()

    async def _serve_tcp(self, stream: trio.abc.Stream) -> None:
        self.tcp_connections += 1
        number = next(self._numbers)
        behaviour = self.behaviour
        connection: WebSocketServerConnection | None = None
        try:
            with trio.CancelScope() as scope:
                self._pending[number] = _Pending(stream, scope)
                if not behaviour.answer_upgrade:
                    while await stream.receive_some():
                        pass  # read the request and say nothing, until the client leaves
                    return
                async with trio.open_nursery() as nursery:
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, message_queue_size=_SERVER_QUEUE
                    )
                    if behaviour.reject_status is not None:
                        await request.reject(
                            behaviour.reject_status,
                            extra_headers=[
                                (k.encode(), v.encode()) for k, v in behaviour.reject_headers
                            ],
                            body=behaviour.reject_body or None,
                        )
                        nursery.cancel_scope.cancel()
                        return
                    offered = request.proposed_subprotocols
                    websocket = await request.accept(subprotocol=offered[0] if offered else None)
                    _no_pong_once_closing(websocket)
                    del self._pending[number]
                    connection = WebSocketServerConnection(
                        number=number,
                        websocket=websocket,
                        path=request.path,
                        headers={
                            k.decode("latin-1").lower(): v.decode("latin-1")
                            for k, v in request.headers
                        },
                        subprotocol=websocket.subprotocol,
                        opened_at=trio.current_time(),
                        stream=stream,
                        scope=scope,
                        server=self,
                    )
                    self._connections[number] = connection
                    self.accepted_at.append(connection.opened_at)
                    self._changed.unpark_all()
                    await self._session(connection, behaviour)
                    nursery.cancel_scope.cancel()
        finally:
            self._pending.pop(number, None)
            self._connections.pop(number, None)
            if connection is not None:
                connection.ended.set()
            self._changed.unpark_all()
            await trio.aclose_forcefully(stream)

    async def _session(
        self, connection: WebSocketServerConnection, behaviour: WebSocketServerBehaviour
    ) -> None:
        try:
            if self._handler is not None:
                await self._handler(connection)
            else:
                await _behave(connection, behaviour)
        except ConnectionClosed:
            pass  # the client left, or the server is closing it
        if connection.closed_at is not None:
            # close() or drop() is under way: the library's reader must live until
            # the close handshake is over, and the closer ends the connection
            await trio.sleep_forever()
        await connection.close()


async def _behave(
    connection: WebSocketServerConnection, behaviour: WebSocketServerBehaviour
) -> None:
    """The default session: greet, record (and echo) messages, close when idle."""
    for message in behaviour.greeting:
        await connection.send(message)
    idle = behaviour.close_after_idle
    while True:
        with trio.move_on_after(math.inf if idle is None else idle) as timer:
            message = await connection.get_message()
        if timer.cancelled_caught:
            await connection.close(behaviour.close_code, behaviour.close_reason)
            return
        if behaviour.echo:
            await connection.send(message)


@asynccontextmanager
async def open_websocket_test_server(
    behaviour: WebSocketServerBehaviour | None = None,
    *,
    handler: Handler | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WebSocketTestServer]:
    """Run a loopback WebSocket server for the duration of the block.

    It listens on 127.0.0.1, on a free port, before the block starts; leaving the
    block drops every connection and stops it.

    Args:
        behaviour: What it does with each connection (default: accept and record).
        handler: A session of your own per accepted connection (the behaviour's
            upgrade settings still apply; its session settings do not). Returning
            closes the connection with 1000.
        tls: Serve ``wss://`` with the project's loopback test certificate
            (clients trust it with ``loopback_client_ssl_context()``).
        ssl_context: Serve ``wss://`` with a server context of your own instead.

    Raises:
        ValueError: both ``tls`` and ``ssl_context`` were given.
    """
    if tls and ssl_context is not None:
        msg = "give tls=True or an ssl_context, not both"
        raise ValueError(msg)
    if tls:
        # reads the certificate through a temporary file: not on the event loop
        ssl_context = await trio.to_thread.run_sync(loopback_server_ssl_context)
    async with trio.open_nursery() as nursery:
        server = WebSocketTestServer(
            nursery, behaviour or WebSocketServerBehaviour(), handler, ssl_context
        )
        await server.start()
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                await server.stop()
            nursery.cancel_scope.cancel()
