"""Tests for the WebSocket session worker, against real trio-websocket servers on loopback.

Every server here is started by the test on 127.0.0.1 (a free port); the black hole
is a real TCP relay that stops passing bytes. Everything runs in the test's trio
process on virtual time (``autojump_clock``: it moves only when every task waits), so
an event-driven detection takes no time at all and a timed one exactly its timeout;
nothing depends on the machine's speed. Real latencies are in
``benchmarks/bench_websocket.py``.
"""

from __future__ import annotations

import contextlib
import math
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from trio.testing import MockClock

import specs
import supervisor
import workers
from specs import SupervisorSpec
from supervisor import ChildState, events
from workers._websocket import (
    RECONNECT_BACKOFF,
    WebSocketConfig,
    WebSocketConfigError,
    WebSocketMessage,
    WebSocketSession,
    WebSocketSessionWorker,
)
from workers.testing import (
    TcpRelay,
    WebSocketServerBehaviour,
    WebSocketServerConnection,
    WebSocketTestServer,
    loopback_client_ssl_context,
    open_websocket_test_server,
)

#: A backoff so long that a failed worker is not restarted during the test.
HOLD = specs.Backoff(wait_initial=60, wait_max=60, wait_jitter=0)
#: A quick reconnect.
QUICK = specs.Backoff(wait_initial=0.02, wait_max=0.5, wait_jitter=0)
#: How long a test waits for what must happen (a hang fails, it does not block CI).
PATIENCE = 5.0


class Exits:
    """A supervisor hook that records exits (and failed starts) for a test to wait on."""

    def __init__(self) -> None:
        self.exits: list[events.ChildExited] = []
        self.failed_starts: list[events.StartFailed] = []
        self.restarts: list[events.RestartScheduled] = []
        self._changed = trio.lowlevel.ParkingLot()

    def __call__(self, event: supervisor.Event) -> None:
        if isinstance(event, events.ChildExited):
            self.exits.append(event)
        elif isinstance(event, events.StartFailed):
            self.failed_starts.append(event)
        elif isinstance(event, events.RestartScheduled):
            self.restarts.append(event)
        self._changed.unpark_all()

    async def wait(self, count: int = 1) -> events.ChildExited:
        """The ``count``-th exit, once it has happened (within PATIENCE)."""
        with trio.fail_after(PATIENCE):
            while len(self.exits) < count:
                await self._changed.park()
        return self.exits[count - 1]

    def failure(self, index: int = 0) -> BaseException | None:
        """What the ``index``-th exit was."""
        return self.exits[index].reason.exception


@pytest.fixture
def registry() -> workers.Registry:
    """A registry of this test's own, so names never clash across tests."""
    return workers.Registry()


def same(failure: BaseException | None, expected: workers.Failure) -> bool:
    """Typed failures compare by identity (they are exceptions): compare their values."""
    return repr(failure) == repr(expected)


def config(url: str, **overrides: Any) -> WebSocketConfig:
    """A configuration with test-sized timeouts and no heartbeat unless asked."""
    fields: dict[str, Any] = {"ping_interval": None, "connect_timeout": 2.0}
    fields.update(overrides)
    return WebSocketConfig(url=url, **fields)


def channel(
    size: float = 100,
) -> tuple[trio.MemorySendChannel[WebSocketMessage], trio.MemoryReceiveChannel[WebSocketMessage]]:
    """The application's own message channel."""
    return trio.open_memory_channel[WebSocketMessage](size)


@asynccontextmanager
async def running(
    worker: WebSocketSessionWorker,
    exits: Exits,
    *,
    restart: specs.Restart = specs.PERMANENT,
    backoff: specs.Backoff = HOLD,
) -> AsyncIterator[supervisor.SupervisorHandle]:
    """The worker as child "ws" of a supervisor, for the block."""
    spec = SupervisorSpec(
        children=[worker.child_spec("ws", restart=restart)],
        intensity=100,
        period=1.0,
        backoff=backoff,
    )
    async with supervisor.open_supervisor(spec, hooks=[exits]) as sup:
        yield sup


async def only_connection(server: WebSocketTestServer) -> WebSocketServerConnection:
    """The server's one open connection, once it is there."""
    with trio.fail_after(PATIENCE):
        await server.wait_connected(1)
    return server.connections[0]


async def start_failure(worker: WebSocketSessionWorker) -> tuple[BaseException, float]:
    """The typed failure that keeps the worker from starting, and how long that took."""
    started = trio.current_time()
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(worker, Exits()):
            pass  # pragma: no cover
    return caught.value.error, trio.current_time() - started


async def free_port() -> int:
    """A loopback port nobody listens on."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    return port


# --------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "http://127.0.0.1/"),
        ("url", "ws://"),
        ("url", "ws://127.0.0.1:99999/"),
        ("url", 8080),
        ("ping_interval", 0),
        ("ping_interval", math.inf),
        ("ping_timeout", -1.0),
        ("connect_timeout", "10"),
        ("disconnect_timeout", math.nan),
        ("message_queue_size", 0),
        ("max_pending", 2.5),
        ("max_message_size", True),
        ("ssl_context", "tls"),
        ("extra_headers", [("x-token", 5)]),
        ("subprotocols", [""]),
    ],
)
def test_config_rejects_an_invalid_field_by_name(field: str, value: object) -> None:
    """An invalid field raises WebSocketConfigError (a ValueError and a TypeError) naming it."""
    fields: dict[str, Any] = {"url": "ws://127.0.0.1:9/", field: value}
    with pytest.raises(WebSocketConfigError) as caught:
        WebSocketConfig(**fields)
    assert caught.value.field == field
    assert repr(field) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TypeError)


def test_config_refuses_tls_settings_for_a_plain_url() -> None:
    """An ssl_context with a ws:// URL is a mistake, reported on ssl_context."""
    with pytest.raises(WebSocketConfigError) as caught:
        WebSocketConfig(url="ws://127.0.0.1:9/", ssl_context=ssl.create_default_context())
    assert caught.value.field == "ssl_context"


def test_config_normalises_headers_and_subprotocols() -> None:
    """Headers may be a mapping or pairs, subprotocols any sequence; both become tuples."""
    made = WebSocketConfig(
        url="wss://example.org/feed?x=1", extra_headers={"Authorization": "t"}, subprotocols=["a"]
    )
    assert made.extra_headers == (("Authorization", "t"),)
    assert made.subprotocols == ("a",)
    target = made.target
    assert (target.host, target.port, target.resource, target.secure) == (
        "example.org",
        443,
        "/feed?x=1",
        True,
    )


def test_worker_needs_exactly_one_place_for_messages() -> None:
    """Without deliver_to or on_message (or with both) the worker is refused at construction."""
    url = config("ws://127.0.0.1:9/")
    send, _ = channel()

    async def handler(message: WebSocketMessage) -> None:
        """Take a message."""

    with pytest.raises(TypeError):
        WebSocketSessionWorker(url)
    with pytest.raises(TypeError):
        WebSocketSessionWorker(url, deliver_to=send, on_message=handler)


def test_reconnecting_child_spec_gives_the_session_its_own_backoff() -> None:
    """The reconnecting spec: a one-child subtree with jittered backoff, the worker TRANSIENT."""
    send, _ = channel()
    worker = WebSocketSessionWorker(config("ws://127.0.0.1:9/"), deliver_to=send)
    child = worker.reconnecting_child_spec("feed")
    assert isinstance(child.start, SupervisorSpec)
    assert child.start.backoff == RECONNECT_BACKOFF
    assert RECONNECT_BACKOFF.wait_jitter > 0
    (inner,) = child.start.children
    assert (inner.id, inner.start, inner.restart) == ("feed", worker, specs.TRANSIENT)


# ------------------------------------------------------------- a healthy session


async def test_messages_reach_the_application_in_order(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """Received text and binary messages arrive in the application's channel, in order."""
    greeting = ("one", b"two", "three")
    async with open_websocket_test_server(WebSocketServerBehaviour(greeting=greeting)) as server:
        send, receive = channel()
        worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        async with running(worker, Exits()):
            with trio.fail_after(PATIENCE):
                got = [await receive.receive() for _ in greeting]
    assert tuple(got) == greeting


async def test_on_message_handler_gets_every_message(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """An on_message handler is awaited once per message, in order."""
    greeting = tuple(f"m{i}" for i in range(10))
    seen: list[WebSocketMessage] = []
    done = trio.Event()

    async def on_message(message: WebSocketMessage) -> None:
        seen.append(message)
        if len(seen) == len(greeting):
            done.set()

    async with open_websocket_test_server(WebSocketServerBehaviour(greeting=greeting)) as server:
        worker = WebSocketSessionWorker(
            config(server.url), on_message=on_message, registry=registry
        )
        async with running(worker, Exits()):
            with trio.fail_after(PATIENCE):
                await done.wait()
    assert tuple(seen) == greeting


async def test_send_directly_and_through_the_mailbox(
    autojump_clock: MockClock, registry: workers.Registry, websocket_server: WebSocketTestServer
) -> None:
    """worker.send, a cast and a call by name all reach the server, in order."""
    server = websocket_server
    send, _ = channel()
    worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
    async with running(worker, Exits()):
        connection = await only_connection(server)
        await worker.send("direct")
        await registry.cast("ws", "cast")
        assert await registry.call("ws", b"call") is None
        with trio.fail_after(PATIENCE):
            await connection.wait_received(3)
    assert connection.received == ["direct", "cast", b"call"]


async def test_send_without_a_session_raises_not_running(autojump_clock: MockClock) -> None:
    """Sending while no session is open raises NotRunning at once."""
    send, _ = channel()
    worker = WebSocketSessionWorker(config("ws://127.0.0.1:9/"), deliver_to=send)
    with pytest.raises(workers.NotRunning):
        await worker.send("hello")


async def test_send_refuses_what_is_not_a_message(autojump_clock: MockClock) -> None:
    """Only str and bytes can be sent."""
    send, _ = channel()
    worker = WebSocketSessionWorker(config("ws://127.0.0.1:9/"), deliver_to=send)
    with pytest.raises(TypeError):
        await worker.send(42)  # type: ignore[arg-type]


async def test_subprotocols_headers_and_path_reach_the_server(
    autojump_clock: MockClock, registry: workers.Registry, websocket_server: WebSocketTestServer
) -> None:
    """The upgrade carries the path, query, extra headers and subprotocol offer."""
    server = websocket_server
    send, _ = channel()
    url = server.url + "feed?since=7"
    made = config(url, extra_headers={"Authorization": "Bearer t"}, subprotocols=("v2", "v1"))
    worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
    async with running(worker, Exits()):
        connection = await only_connection(server)
        assert worker.session is not None
        assert worker.session.subprotocol == "v2"
    assert connection.path == "/feed?since=7"
    assert connection.headers["authorization"] == "Bearer t"
    assert connection.subprotocol == "v2"


async def test_wss_session_over_tls(autojump_clock: MockClock, registry: workers.Registry) -> None:
    """A wss:// URL connects over TLS with the configured trust, and messages flow."""
    behaviour = WebSocketServerBehaviour(greeting=("over tls",), echo=True)
    async with open_websocket_test_server(behaviour, tls=True) as server:
        assert server.url.startswith("wss://")
        send, receive = channel()
        made = config(server.url, ssl_context=loopback_client_ssl_context())
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        async with running(worker, Exits()):
            with trio.fail_after(PATIENCE):
                assert await receive.receive() == "over tls"
                await worker.send("back")
                assert await receive.receive() == "back"


async def test_untrusted_certificate_fails_at_once_as_connection_lost(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """A TLS handshake failure is a ConnectionLost found at once, not at connect_timeout."""
    async with open_websocket_test_server(tls=True) as server:
        send, _ = channel()
        made = config(server.url, ssl_context=ssl.create_default_context(), connect_timeout=30.0)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        with trio.fail_after(PATIENCE):
            failure, _ = await start_failure(worker)
    assert isinstance(failure, workers.ConnectionLost)
    assert "TLS" in failure.reason


# --------------------------------------------------------------- losing the session


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, "idle"), (1001, "going away"), (1011, "server error")]
)
async def test_close_frame_ends_the_session_at_once_with_its_code(
    autojump_clock: MockClock, registry: workers.Registry, code: int, reason: str
) -> None:
    """A server's close frame (here after 0.1 s idle) is ConnectionLost(code, reason), at once."""
    behaviour = WebSocketServerBehaviour(close_after_idle=0.1, close_code=code, close_reason=reason)
    exits = Exits()
    async with open_websocket_test_server(behaviour) as server:
        send, _ = channel()
        worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        async with running(worker, exits):
            connection = await only_connection(server)
            exit_event = await exits.wait()
    assert same(exits.failure(), workers.ConnectionLost(code=code, reason=reason))
    assert connection.closed_at is not None
    assert exit_event.time == connection.closed_at  # detected at once, not polled


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_tcp_drop_without_close_frame_is_1006(
    autojump_clock: MockClock,
    registry: workers.Registry,
    reset: bool,
    websocket_server: WebSocketTestServer,
) -> None:
    """TCP closed (FIN or RST) without a close frame is ConnectionLost(1006), at once."""
    exits = Exits()
    server = websocket_server
    send, _ = channel()
    worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
    async with running(worker, exits):
        connection = await only_connection(server)
        await connection.drop(reset=reset)
        exit_event = await exits.wait()
    failure = exits.failure()
    assert isinstance(failure, workers.ConnectionLost)
    assert failure.code == 1006
    assert connection.closed_at is not None
    assert exit_event.time == connection.closed_at  # detected at once, not polled


async def test_half_open_link_is_a_heartbeat_timeout(
    autojump_clock: MockClock,
    websocket_server: WebSocketTestServer,
    tcp_relay: TcpRelay,
    registry: workers.Registry,
) -> None:
    """A black-holed link (TCP up, nothing passes) is HeartbeatTimeout within interval + timeout."""
    exits = Exits()
    send, _ = channel()
    made = config(tcp_relay.url, ping_interval=0.2, ping_timeout=0.3)
    worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
    async with running(worker, exits):
        await only_connection(websocket_server)
        await trio.sleep(0.3)  # a heartbeat or two pass while the link is healthy
        assert not exits.exits
        frozen_at = trio.current_time()
        tcp_relay.freeze()
        exit_event = await exits.wait()
    assert same(exits.failure(), workers.HeartbeatTimeout(after=0.3))
    latency = exit_event.time - frozen_at
    assert 0.3 <= latency <= 0.2 + 0.3  # at most one interval, then the timeout


async def test_unanswered_upgrade_is_bounded_by_connect_timeout(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """Accepting TCP but never answering the upgrade fails the start at connect_timeout."""
    behaviour = WebSocketServerBehaviour(answer_upgrade=False)
    async with open_websocket_test_server(behaviour) as server:
        send, _ = channel()
        made = config(server.url, connect_timeout=0.3)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        with trio.fail_after(PATIENCE):
            failure, took = await start_failure(worker)
        assert server.tcp_connections == 1
    assert same(failure, workers.HeartbeatTimeout(after=0.3))
    assert took == pytest.approx(0.3)


async def test_connection_closed_during_the_upgrade_fails_at_once(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """TCP closed before the upgrade is answered: ConnectionLost(1006) at once, not a timeout."""

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        send, _ = channel()
        made = config(f"ws://127.0.0.1:{port}/", connect_timeout=30.0)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        with trio.fail_after(PATIENCE):
            failure, _ = await start_failure(worker)
        nursery.cancel_scope.cancel()
    assert isinstance(failure, workers.ConnectionLost)
    assert failure.code == 1006


async def test_refused_connection_is_connection_lost(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """Nobody listening: the start fails with ConnectionLost."""
    send, _ = channel()
    worker = WebSocketSessionWorker(
        config(f"ws://127.0.0.1:{await free_port()}/"), deliver_to=send, registry=registry
    )
    failure, _ = await start_failure(worker)
    assert isinstance(failure, workers.ConnectionLost)
    assert isinstance(failure.__cause__, OSError)
    assert failure.code is None  # no WebSocket was ever open


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejection_fails_the_first_start_with_auth_revoked(
    autojump_clock: MockClock, registry: workers.Registry, status: int
) -> None:
    """An upgrade rejected with 401/403 is AuthRevoked, carrying the status and body."""
    behaviour = WebSocketServerBehaviour(reject_status=status, reject_body=b"bad token")
    async with open_websocket_test_server(behaviour) as server:
        send, _ = channel()
        worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        failure, _ = await start_failure(worker)
    assert same(failure, workers.AuthRevoked(cause=f"HTTP {status}: bad token"))


async def test_auth_rejection_on_reconnect_leaves_a_transient_worker_down(
    autojump_clock: MockClock, registry: workers.Registry, websocket_server: WebSocketTestServer
) -> None:
    """Rejected with 401 on reconnecting: a transient worker exits AuthRevoked and stays down."""
    exits = Exits()
    server = websocket_server
    send, _ = channel()
    worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
    async with running(worker, exits, restart=specs.TRANSIENT, backoff=QUICK) as sup:
        connection = await only_connection(server)
        server.behaviour = WebSocketServerBehaviour(reject_status=401)
        await connection.drop()
        await exits.wait(2)
        await trio.sleep(0.2)  # long enough for any further restart to show
        (child,) = sup.which_children()
    assert [type(e.reason.exception) for e in exits.exits] == [
        workers.ConnectionLost,
        workers.AuthRevoked,
    ]
    assert child.state is ChildState.STOPPED
    assert server.tcp_connections == 2


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (503, (), workers.ServerError(status=503, detail="")),
        (404, (), workers.AuthRevoked(cause="HTTP 404")),
        (429, (("Retry-After", "7"),), workers.RateLimited(retry_after=7.0)),
    ],
)
async def test_other_rejections_carry_their_status(
    autojump_clock: MockClock,
    registry: workers.Registry,
    status: int,
    headers: tuple[tuple[str, str], ...],
    expected: workers.Failure,
) -> None:
    """Other upgrade rejections are typed by the status table (429 honours Retry-After)."""
    behaviour = WebSocketServerBehaviour(reject_status=status, reject_headers=headers)
    async with open_websocket_test_server(behaviour) as server:
        send, _ = channel()
        worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        failure, _ = await start_failure(worker)
    assert same(failure, expected)


async def test_oversized_message_is_connection_lost_1009(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """A message over max_message_size closes the session with 1009."""
    exits = Exits()
    behaviour = WebSocketServerBehaviour(greeting=("x" * 100,))
    async with open_websocket_test_server(behaviour) as server:
        send, _ = channel()
        made = config(server.url, max_message_size=10)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        async with running(worker, exits):
            await exits.wait()
    failure = exits.failure()
    assert isinstance(failure, workers.ConnectionLost)
    assert failure.code == 1009


async def test_failing_handler_crashes_the_session_and_says_1011(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """An on_message handler that raises ends the worker with Crashed; the server sees 1011."""
    exits = Exits()

    async def on_message(message: WebSocketMessage) -> None:
        raise ValueError(message)

    behaviour = WebSocketServerBehaviour(greeting=("poison",))
    async with open_websocket_test_server(behaviour) as server:
        worker = WebSocketSessionWorker(
            config(server.url), on_message=on_message, registry=registry
        )
        async with running(worker, exits):
            connection = await only_connection(server)
            await exits.wait()
            with trio.fail_after(PATIENCE):
                await connection.ended.wait()
    failure = exits.failure()
    assert isinstance(failure, workers.Crashed)
    assert isinstance(failure.exception, ValueError)
    assert connection.peer_close_code == 1011
    assert worker.pending == 0  # the poison message is not offered again


async def keep_pinging(websocket: trio_websocket.WebSocketConnection, period: float) -> None:
    """Ping every ``period`` seconds (a pong or not), until the connection is closed."""
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        while True:
            with trio.move_on_after(period):
                await websocket.ping()
                await trio.sleep_forever()


@pytest.mark.parametrize("close", ["close_all", "close_after_idle"])
async def test_server_closing_while_the_client_pings_goes_on(
    autojump_clock: MockClock, close: str
) -> None:
    """A 1011 close racing a client's pings reaches the client; the server lives on, every time."""
    idle = 1 / 8 if close == "close_after_idle" else None
    behaviour = WebSocketServerBehaviour(close_after_idle=idle, close_code=1011)
    rounds = 20
    async with open_websocket_test_server(behaviour) as server:
        for _ in range(rounds):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            try:
                async with trio.open_nursery() as nursery:
                    websocket = await trio_websocket.wrap_client_stream(
                        nursery, stream, "127.0.0.1", "/"
                    )
                    for _ in range(4):
                        nursery.start_soon(keep_pinging, websocket, 1 / 128)
                    if idle is None:
                        await trio.sleep(1 / 8)
                        await server.close_all(1011)
                    with trio.fail_after(PATIENCE):
                        await server.wait_disconnected()
            finally:
                await trio.aclose_forcefully(stream)  # a client waits for the server's TCP close
            assert websocket.closed is not None
            assert websocket.closed.code == 1011
        assert server.accepted == rounds


# ------------------------------------------------------------------ backpressure


async def test_unread_messages_do_not_block_pongs(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """With trio-websocket's queue at 1 and the application not reading, the heartbeat holds."""
    greeting = tuple(f"m{i}" for i in range(50))
    exits = Exits()
    async with open_websocket_test_server(WebSocketServerBehaviour(greeting=greeting)) as server:
        send, receive = channel(0)  # the application takes nothing for now
        made = config(server.url, message_queue_size=1, ping_interval=0.05, ping_timeout=0.1)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        async with running(worker, exits):
            await only_connection(server)
            await trio.sleep(0.6)  # a dozen heartbeats with 50 messages unread
            assert not exits.exits
            assert worker.session is not None
            assert worker.session.last_pong_rtt is not None
            with trio.fail_after(PATIENCE):
                got = [await receive.receive() for _ in greeting]
    assert tuple(got) == greeting


async def test_full_buffer_holds_back_reading_and_loses_nothing(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """Past max_pending the worker stops reading; the heartbeat waits; every message arrives."""
    greeting = tuple(f"m{i}" for i in range(100))
    exits = Exits()
    async with open_websocket_test_server(WebSocketServerBehaviour(greeting=greeting)) as server:
        send, receive = channel(0)
        made = config(
            server.url, message_queue_size=1, max_pending=4, ping_interval=0.05, ping_timeout=0.1
        )
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        async with running(worker, exits):
            await only_connection(server)
            await trio.sleep(0.4)  # several heartbeats while held back
            assert worker.session is not None
            assert worker.session.held_back
            assert worker.pending == 4
            got: list[WebSocketMessage] = []
            with trio.fail_after(PATIENCE):
                for _ in greeting:
                    got.append(await receive.receive())
                    await trio.sleep(0.002)  # a slow application
            assert not exits.exits
    assert tuple(got) == greeting


async def test_messages_received_before_a_close_are_not_lost(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """Messages buffered when the session closes reach the application after the restart."""
    sent = [f"m{i}" for i in range(20)]

    async def first_sends_then_closes(connection: WebSocketServerConnection) -> None:
        if connection.number == 1:
            for message in sent:
                await connection.send(message)
            await connection.close(1001, "going away")
        await trio.sleep_forever()

    exits = Exits()
    async with open_websocket_test_server(handler=first_sends_then_closes) as server:
        send, receive = channel(5)  # room for a few; the rest wait in the worker
        worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        async with running(worker, exits, backoff=QUICK):
            await exits.wait()
            got: list[WebSocketMessage] = []
            with trio.fail_after(PATIENCE):
                for _ in sent:
                    got.append(await receive.receive())
    assert same(exits.failure(), workers.ConnectionLost(code=1001, reason="going away"))
    assert got == sent


async def test_resume_replays_from_the_last_acknowledged_point(
    autojump_clock: MockClock,
    registry: workers.Registry,
) -> None:
    """The next session's on_open asks to resume after the last ack; nothing is missed."""
    log = [str(n) for n in range(1, 11)]
    resumes: list[WebSocketMessage] = []

    async def feed(connection: WebSocketServerConnection) -> None:
        request = await connection.get_message()
        resumes.append(request)
        after = int(str(request).split()[1])
        if connection.number == 1:
            for event in log[after:4]:
                await connection.send(event)
            while "ack 4" not in connection.received:
                await connection.get_message()
            await connection.close(1012, "service restart")
            return
        for event in log[after:]:
            await connection.send(event)
        await trio.sleep_forever()

    handled: list[int] = []
    done = trio.Event()

    async def on_message(message: WebSocketMessage) -> None:
        number = int(message)
        if number <= (worker.last_ack or 0):
            return  # a replayed duplicate
        handled.append(number)
        worker.acknowledge(number)
        await worker.send(f"ack {number}")
        if number == len(log):
            done.set()

    async def on_open(session: WebSocketSession) -> None:
        await session.send(f"resume {session.resume_from or 0}")

    exits = Exits()
    async with open_websocket_test_server(handler=feed) as server:
        worker = WebSocketSessionWorker(
            config(server.url), on_message=on_message, on_open=on_open, registry=registry
        )
        async with running(worker, exits, backoff=QUICK):
            with trio.fail_after(PATIENCE):
                await done.wait()
    assert handled == list(range(1, 11))
    assert resumes == ["resume 0", "resume 4"]
    assert same(exits.failure(), workers.ConnectionLost(code=1012, reason="service restart"))


# ---------------------------------------------------------------------- stopping


async def test_stop_says_goodbye_with_1000(
    autojump_clock: MockClock, registry: workers.Registry, websocket_server: WebSocketTestServer
) -> None:
    """A worker that is stopped closes its connection with 1000 before it ends."""
    server = websocket_server
    send, _ = channel()
    worker = WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
    async with running(worker, Exits()) as sup:
        connection = await only_connection(server)
        await sup.terminate_child("ws")
        with trio.fail_after(PATIENCE):
            await connection.ended.wait()
        assert worker.session is None
    assert connection.peer_close_code == 1000


async def test_stop_on_a_dead_link_waits_only_disconnect_timeout(
    autojump_clock: MockClock,
    websocket_server: WebSocketTestServer,
    tcp_relay: TcpRelay,
    registry: workers.Registry,
) -> None:
    """Stopping a worker whose link is black-holed takes disconnect_timeout, not 60 s."""
    send, _ = channel()
    made = config(tcp_relay.url, disconnect_timeout=0.2)
    worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
    async with running(worker, Exits()) as sup:
        await only_connection(websocket_server)
        tcp_relay.freeze()
        started = trio.current_time()
        with trio.fail_after(PATIENCE):
            await sup.terminate_child("ws")
        took = trio.current_time() - started
    assert took == pytest.approx(0.2)


def _tasks_below(task: trio.lowlevel.Task | None) -> list[trio.lowlevel.Task]:
    assert task is not None
    found = [task]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.extend(_tasks_below(child))
    return found


async def test_no_task_outlives_the_worker(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """After the worker ends, none of its tasks (session, library reader, host) is left."""
    async with open_websocket_test_server(WebSocketServerBehaviour(echo=True)) as server:
        send, _ = channel()
        made = config(server.url, ping_interval=0.05)
        worker = WebSocketSessionWorker(made, deliver_to=send, registry=registry)
        async with running(worker, Exits()) as sup:
            await only_connection(server)
            names = {t.name for t in _tasks_below(trio.lowlevel.current_root_task())}
            assert any("websocket" in name for name in names)
            await sup.terminate_child("ws")
            await trio.testing.wait_all_tasks_blocked()
            left = [t.name for t in _tasks_below(trio.lowlevel.current_root_task())]
    assert not [name for name in left if "websocket" in name or "_heartbeat" in name]


# -------------------------------------------------------- many clients, one server


async def test_fifty_clients_recover_from_a_server_restart_spread_by_jitter(
    autojump_clock: MockClock, websocket_server: WebSocketTestServer
) -> None:
    """A server restart with 50 clients connected: all reconnect, spread over the jitter."""
    clients = 50
    jitter = 0.5
    backoff = specs.Backoff(wait_initial=0.05, wait_max=1.0, wait_jitter=jitter)
    registry = workers.Registry()
    exits = Exits()
    server = websocket_server
    send, _ = channel(math.inf)
    fleet = [
        WebSocketSessionWorker(config(server.url), deliver_to=send, registry=registry)
        for _ in range(clients)
    ]
    tree = SupervisorSpec(
        children=[w.reconnecting_child_spec(f"c{i}", backoff=backoff) for i, w in enumerate(fleet)]
    )
    async with supervisor.open_supervisor(tree, hooks=[exits], rng=random.Random(5)):
        assert server.accepted == clients
        restarted_at = trio.current_time()
        await server.restart(code=1012, reason="service restart")
        with trio.fail_after(PATIENCE):
            await server.wait_accepted(2 * clients)
            await server.wait_connected(clients)
            await trio.testing.wait_all_tasks_blocked()  # their inits return
        assert all(w.session is not None for w in fleet)
        lost = [e.reason.exception for e in exits.exits]
    assert len(lost) >= clients
    assert all(isinstance(failure, workers.ConnectionLost) for failure in lost)
    assert sorted(registry.names()) == []  # all stopped with the tree
    reconnects = sorted(t - restarted_at for t in server.accepted_at[clients:])
    assert reconnects[0] >= backoff.wait_initial
    assert reconnects[-1] - reconnects[0] > jitter / 2  # spread out, not one burst
