"""Tests for the long-polling worker against a real loopback Bot API server and proxies.

Every test runs real sockets on 127.0.0.1, in the test's own trio process, on
virtual time (``autojump_clock``: it moves only when every task waits, and not
while a worker thread runs; see ``conftest.py``). So durations are asserted
exactly, and nothing depends on the machine's speed.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

import specs
import supervisor
import workers
from specs import SupervisorSpec
from supervisor import ChildState, events
from workers._polling import (
    ApiError,
    FileOffsetStore,
    MemoryOffsetStore,
    OnHandlerFailure,
    PollingConfig,
    PollingConfigError,
    PollingLoopWorker,
    SaveOffset,
    Update,
    UpdateFailed,
)
from workers.testing import (
    BotApiFault,
    BotApiFaultAction,
    BotApiServer,
    ConnectProxy,
    open_botapi_server,
    open_connect_proxy,
)
from workers.testing import loopback_client_ssl_context as client_tls
from workers.testing.pytest_plugin import LoopbackServers

from .helpers import Recorder

#: How long (virtual seconds) a test waits for what must happen: a hang fails, it does not block.
SOON = 5.0


@pytest.fixture
def server(botapi_server: BotApiServer) -> BotApiServer:
    """A plain-HTTP loopback Bot API (the plugin's)."""
    return botapi_server


@pytest.fixture
async def tls_server(loopback_servers: LoopbackServers) -> BotApiServer:
    """A loopback Bot API over TLS (a proxy tunnels it, as it would Telegram's)."""
    return await loopback_servers.enter(open_botapi_server(tls=True))


class Log:
    """A handler that records each update it finished, in order."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    async def __call__(self, update: Update) -> None:
        await trio.lowlevel.checkpoint()  # a restart may land inside the handler
        self.ids.append(update["update_id"])


def config(server: BotApiServer, **overrides: Any) -> PollingConfig:
    """A config polling ``server`` with short timeouts."""
    values: dict[str, Any] = {
        "url": server.method_url("getUpdates"),
        "poll_timeout": 5.0,
        "read_margin": 1.0,
        "connect_timeout": 1.0,
        "pool_timeout": 0.2,
    }
    values.update(overrides)
    return PollingConfig(**values)


def tree(*workers_: PollingLoopWorker, restart: specs.Restart = specs.PERMANENT) -> SupervisorSpec:
    """A tree of pollers "p0", "p1"... restarted at once, with room for many restarts."""
    children = [
        w.child_spec(f"p{i}", restart=restart, shutdown=1.0) for i, w in enumerate(workers_)
    ]
    return SupervisorSpec(children=children, intensity=1000, period=1)


def poller(server: BotApiServer, handler: Any = None, **overrides: Any) -> PollingLoopWorker:
    """A worker on its own registry polling ``server``."""
    return PollingLoopWorker(
        config(server, **overrides), handler or Log(), registry=workers.Registry()
    )


def exits(recorder: Recorder) -> list[BaseException | None]:
    """The failures the children exited with, in order."""
    return [e.reason.exception for e in recorder.events if isinstance(e, events.ChildExited)]


def reprs(failures: list[BaseException | None]) -> list[str]:
    """Failures as text: typed failures are exceptions, which compare by identity."""
    return [repr(f) for f in failures]


async def until(server: BotApiServer | None, condition: Callable[[], bool]) -> None:
    """Wait (at most SOON seconds) until ``condition()`` holds.

    Checked on each change of the server's state, and every 10 ms for what
    changes only on the client's side (or when there is no server).
    """
    with trio.fail_after(SOON):
        while not condition():
            with trio.move_on_after(0.01):
                if server is None:
                    await trio.sleep_forever()
                await server.wait_until(condition)


def handled(worker: PollingLoopWorker) -> list[int]:
    """The ids its Log handler finished."""
    handler = worker._handler
    assert isinstance(handler, Log)
    return handler.ids


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ----------------------------------------------------------------- the loopback server


async def test_server_answers_a_waiting_poll_when_an_update_arrives(
    autojump_clock: MockClock,
    server: BotApiServer,
) -> None:
    """A long poll waits for an update and is answered as soon as one is pushed."""
    async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
        answers: list[Any] = []

        async def poll() -> None:
            response = await client.get(server.method_url("getUpdates"), params={"timeout": 5})
            answers.append(response.json())

        nursery.start_soon(poll)
        await until(server, lambda: server.polls_waiting == 1)
        started = trio.current_time()
        server.push(message={"text": "hi"})
    assert trio.current_time() == started  # at once, not at the poll's timeout
    assert answers == [{"ok": True, "result": [{"update_id": 1, "message": {"text": "hi"}}]}]


async def test_server_offset_confirms_older_updates(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """getUpdates with an offset forgets every update below it; a negative one keeps the last."""
    server.push_many(5)
    async with httpx.AsyncClient() as client:
        response = await client.get(server.method_url("getUpdates"), params={"offset": 3})
        assert [u["update_id"] for u in response.json()["result"]] == [3, 4, 5]
        response = await client.get(server.method_url("getUpdates"), params={"offset": -1})
        assert [u["update_id"] for u in response.json()["result"]] == [5]
    assert [u["update_id"] for u in server.pending] == [5]


async def test_server_ends_an_older_poll_with_409(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A newer getUpdates ends the one still waiting with Telegram's 409 Conflict."""
    statuses: list[int] = []
    async with httpx.AsyncClient() as first, httpx.AsyncClient() as second:

        async def poll(client: httpx.AsyncClient) -> None:
            response = await client.get(server.method_url("getUpdates"), params={"timeout": 5})
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll, first)
            await until(server, lambda: server.polls_waiting == 1)
            nursery.start_soon(poll, second)
            await until(server, lambda: statuses == [409])
            server.push()
    assert statuses == [409, 200]


async def test_proxy_tunnels_only_to_loopback(
    autojump_clock: MockClock, connect_proxy: ConnectProxy
) -> None:
    """The proxy refuses a CONNECT to a non-loopback address without connecting anywhere."""
    proxy = connect_proxy
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(SOON):
            answer = await stream.receive_some(1024)
    assert answer.startswith(b"HTTP/1.1 403")
    assert proxy.tunnels_opened == 0


# ----------------------------------------------------------------- the worker: the happy path


async def test_updates_are_handled_in_order_and_the_offset_moves(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """Each update is handled once, in order; the next poll asks from the last one + 1."""
    worker = poller(server)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        server.push_many(3)
        await until(server, lambda: handled(worker) == [1, 2, 3])
        await until(server, lambda: server.requests[-1].params.get("offset") == "4")
    assert worker.offset == 4
    assert server.connections_accepted == 1


async def test_call_api_is_not_blocked_by_the_long_poll(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """sendMessage goes through the API client while the poll holds its own connection."""
    worker = poller(server)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        await until(server, lambda: server.polls_waiting == 1)
        with trio.fail_after(1.0):
            message = await worker.call_api("sendMessage", chat_id=7, text="hi")
        assert server.polls_waiting == 1
    assert message["text"] == "hi"
    assert server.sent_messages == [{"chat_id": 7, "text": "hi"}]


async def test_call_api_raises_typed_errors(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """call_api raises FloodWait for 429 and ApiError for a request's own error."""
    server.set_responder("sendMessage", lambda p: BotApiFault.error(429, retry_after=3))
    server.set_responder(
        "banChatMember", lambda p: BotApiFault.error(400, description="chat not found")
    )
    worker = poller(server)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        with pytest.raises(workers.FloodWait) as flood:
            await worker.call_api("sendMessage", chat_id=1, text="x")
        with pytest.raises(ApiError) as error:
            await worker.call_api("banChatMember", chat_id=1, user_id=2)
    assert flood.value.seconds == 3
    assert (error.value.status, error.value.description) == (400, "chat not found")


async def test_call_api_between_incarnations_is_not_running(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """With no incarnation running, call_api raises NotRunning at once."""
    worker = poller(server)
    with pytest.raises(workers.NotRunning):
        await worker.call_api("getMe")


# ----------------------------------------------------------------- no update lost or repeated


async def test_no_update_lost_or_duplicated_across_100_forced_restarts(
    autojump_clock: MockClock,
    server: BotApiServer,
) -> None:
    """Across 100 forced restarts of six kinds, every update is handled exactly once, in order."""
    crash_on: set[int] = set()
    block_on: set[int] = set()
    blocked = trio.Event()
    finished: list[int] = []

    async def handler(update: Update) -> None:
        update_id = update["update_id"]
        await trio.lowlevel.checkpoint()
        if update_id in crash_on:
            crash_on.discard(update_id)
            raise workers.ConnectionLost(reason="forced")
        if update_id in block_on:
            block_on.discard(update_id)
            blocked.set()
            await trio.sleep_forever()
        finished.append(update_id)

    worker = PollingLoopWorker(config(server), handler, registry=workers.Registry())
    recorder = Recorder()
    faults: list[Callable[[], BotApiFault]] = [
        lambda: BotApiFault.error(500),
        lambda: BotApiFault.error(502, json_body=False),
        lambda: BotApiFault.drop(times=2),
        lambda: BotApiFault.close_mid_response(times=2),
    ]

    def settled(total: int, exits_before: int) -> Callable[[], bool]:
        """All pushed updates finished, the restart done, the new incarnation polling."""
        return lambda: (
            len(finished) == total
            and len(exits(recorder)) > exits_before
            and server.polls_waiting >= 1
        )

    incarnations = 1
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]) as sup:
        for round_ in range(100):
            kind = round_ % 6
            before = len(exits(recorder))
            if kind < len(faults):
                server.inject(faults[kind]())
                server.push_many(3)
            elif kind == 4:  # the handler fails in the middle of a batch
                first = server.push_many(3)[0]
                crash_on.add(first + 1)
            else:  # stopped and started while a handler is running
                blocked = trio.Event()
                block_on.add(server.push())
                with trio.fail_after(SOON):
                    await blocked.wait()
                await sup.terminate_child("p0")
                await sup.restart_child("p0")
                before -= 1  # a stop is no exit
            await until(server, settled(server.next_update_id - 1, before))
            incarnations += 1
        assert sup.which_children()[0].incarnation == incarnations == 101
    assert finished == list(range(1, server.next_update_id))
    assert max(server.delivered.values()) > 1  # redeliveries did happen, and were absorbed


async def test_file_offset_store_resumes_in_a_new_process(
    autojump_clock: MockClock, server: BotApiServer, tmp_path: Path
) -> None:
    """A new worker on the same offset file skips what the last one handled, unconfirmed or not."""
    path = tmp_path / "offset"
    first = Log()

    async def stall_after_first(update: Update) -> None:
        if update["update_id"] == 1:
            server.inject(BotApiFault.stall())  # the next poll never tells the server the offset
        await first(update)

    server.push_many(3)
    worker = PollingLoopWorker(
        config(server),
        stall_after_first,
        offsets=FileOffsetStore(path),
        registry=workers.Registry(),
    )
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        await until(server, lambda: server.calls["getUpdates"] == 2)
    assert first.ids == [1, 2, 3]
    assert [u["update_id"] for u in server.pending] == [1, 2, 3]  # never confirmed

    second = PollingLoopWorker(
        config(server), Log(), offsets=FileOffsetStore(path), registry=workers.Registry()
    )
    async with supervisor.open_supervisor(tree(second), hooks=[]):
        server.push()
        await until(server, lambda: handled(second) == [4])
    assert path.read_text() == "5\n"


async def test_updates_repeated_below_the_offset_are_dropped(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """Updates a server sends again below the offset are not handed to the handler again."""
    server.set_responder("getUpdates", lambda p: [{"update_id": 1}, {"update_id": 2}])
    worker = poller(server)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        await until(server, lambda: worker.stats.duplicates_dropped >= 4)
    assert handled(worker) == [1, 2]


class GatedStore(MemoryOffsetStore):
    """A memory store whose first save of one offset waits until it is cancelled."""

    def __init__(self, gated: int) -> None:
        super().__init__()
        self.gated = gated
        self.waiting = trio.Event()

    async def save(self, offset: int) -> None:
        if offset == self.gated and not self.waiting.is_set():
            self.waiting.set()
            await trio.sleep_forever()
        await super().save(offset)


async def test_a_restart_during_the_offset_save_repeats_nothing(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A stop landing in the save after a handler returned neither repeats nor loses the update."""
    store = GatedStore(gated=2)
    worker = PollingLoopWorker(config(server), Log(), offsets=store, registry=workers.Registry())
    async with supervisor.open_supervisor(tree(worker), hooks=[]) as sup:
        server.push()
        with trio.fail_after(SOON):
            await store.waiting.wait()
        await sup.terminate_child("p0")
        assert store.offset == 2  # written when the incarnation ended
        await sup.restart_child("p0")
        server.push()
        await until(server, lambda: handled(worker) == [1, 2])
    assert store.offset == 3


class CountingStore(MemoryOffsetStore):
    """A memory store that counts its saves."""

    saves = 0

    async def save(self, offset: int) -> None:
        self.saves += 1
        await super().save(offset)


async def test_each_poll_saving_writes_the_store_once_per_batch(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """With SaveOffset.EACH_POLL the store is written once per answered poll, not per update."""
    store = CountingStore()
    worker = PollingLoopWorker(
        config(server, save_offset=SaveOffset.EACH_POLL),
        Log(),
        offsets=store,
        registry=workers.Registry(),
    )
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        server.push_many(5)
        await until(server, lambda: store.offset == 6)
    assert (store.saves, handled(worker)) == (1, [1, 2, 3, 4, 5])


async def test_restarts_do_not_keep_old_incarnations_alive(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """After many restarts, only the running incarnation's clients are alive."""
    server.inject(BotApiFault.error(500, times=None))
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        await until(server, lambda: len(exits(recorder)) >= 30)
        gc.collect()
        clients = sum(1 for o in gc.get_objects() if isinstance(o, httpx.AsyncClient))
    assert clients <= 4  # this incarnation's two, and perhaps the last one's


async def test_file_offset_store_replaces_the_file_atomically(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Saving writes the new offset through a temporary file and leaves nothing else behind."""
    store = FileOffsetStore(tmp_path / "offset")
    assert await store.load() is None
    await store.save(41)
    await store.save(42)
    assert await store.load() == 42
    assert os.listdir(tmp_path) == ["offset"]


async def test_file_offset_store_refuses_a_corrupt_file(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """A file that holds no offset fails loudly, naming the file."""
    path = tmp_path / "offset"
    path.write_text("garbage")
    with pytest.raises(PollingConfigError, match="offset"):
        await FileOffsetStore(path).load()


# ----------------------------------------------------------------- connection failures


async def test_a_stale_keepalive_connection_is_retried_once(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A request dropped on a reused connection is sent again at once, with no restart."""
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: handled(worker) == [1] and server.polls_waiting == 1)
        server.inject(BotApiFault.drop())
        server.push()  # answered; the next poll goes out on the kept-alive connection
        await until(server, lambda: server.calls["getUpdates"] == 4)
        server.push()
        await until(server, lambda: handled(worker) == [1, 2, 3])
    assert exits(recorder) == []
    assert worker.stats.stale_retries == 1
    assert [r.reused for r in server.requests if r.fault is BotApiFaultAction.DROP] == [True]


async def test_a_failed_retry_is_connection_lost(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """When the retry on a fresh connection fails too, the worker exits with ConnectionLost."""
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: handled(worker) == [1] and server.polls_waiting == 1)
        server.inject(BotApiFault.drop(times=2))
        server.push()
        await until(server, lambda: len(exits(recorder)) == 1 and server.polls_waiting == 1)
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ConnectionLost)
    assert "RemoteProtocolError" in failure.reason
    assert handled(worker) == [1, 2]


async def test_a_response_cut_in_the_middle_is_retried(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A response closed half-way on a reused connection is retried like a stale one."""
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: handled(worker) == [1] and server.polls_waiting == 1)
        server.inject(BotApiFault.close_mid_response())
        server.push()
        await until(server, lambda: worker.stats.stale_retries == 1)
        server.push()
        await until(server, lambda: handled(worker) == [1, 2, 3])
    assert exits(recorder) == []


async def test_idle_connections_closed_by_the_server_cost_no_restart(
    autojump_clock: MockClock,
) -> None:
    """A server that silently closes idle keep-alive connections causes no failure."""

    async def slow(update: Update) -> None:
        await trio.sleep(0.15)  # the connection idles longer than the server keeps it
        ids.append(update["update_id"])

    ids: list[int] = []
    recorder = Recorder()
    async with open_botapi_server(keepalive_timeout=0.05) as server:
        worker = poller(server, slow)
        async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
            # one at a time, so that the connection idles after each answer
            server.push()
            await until(server, lambda: ids == [1])
            server.push()
            await until(server, lambda: ids == [1, 2])
            server.push()
            await until(server, lambda: ids == [1, 2, 3])
    assert exits(recorder) == []
    assert server.connections_accepted >= 2


async def test_connections_cut_under_a_waiting_poll_cost_no_restart(
    autojump_clock: MockClock,
    server: BotApiServer,
) -> None:
    """The server cutting every connection under a waiting poll is absorbed by the retry."""
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: handled(worker) == [1] and server.polls_waiting == 1)
        assert server.drop_connections() == 1
        await until(server, lambda: worker.stats.stale_retries == 1 and server.polls_waiting == 1)
        server.push()
        await until(server, lambda: handled(worker) == [1, 2])
    assert exits(recorder) == []


async def test_a_stalled_poll_is_a_heartbeat_timeout(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A poll unanswered for poll timeout + margin ends the worker with HeartbeatTimeout."""
    server.inject(BotApiFault.stall())
    worker = poller(server, poll_timeout=0.1, read_margin=0.3)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        await until(server, lambda: len(exits(recorder)) == 1)
        server.push()
        await until(server, lambda: handled(worker) == [1])
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.HeartbeatTimeout)
    assert failure.after == pytest.approx(0.4)
    (started,), (exited,) = recorder.times(events.ChildStarted), recorder.times(events.ChildExited)
    assert exited - started == pytest.approx(0.4)


async def test_connection_refused_is_connection_lost(autojump_clock: MockClock) -> None:
    """With no proxy, a refused connection is ConnectionLost."""
    url = f"http://127.0.0.1:{closed_port()}/bot1:x/getUpdates"
    worker = PollingLoopWorker(PollingConfig(url=url), Log(), registry=workers.Registry())
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker, restart=specs.TEMPORARY), hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ConnectionLost)
    assert "ConnectError" in failure.reason


async def test_pool_timeout_restarts_with_a_fresh_client(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A leaked connection makes the next poll PoolExhausted; the restart polls on a new client."""
    leaked: list[httpx.Response] = []
    clients: list[httpx.AsyncClient] = []
    ids: list[int] = []

    async def leaky(update: Update) -> None:
        client = worker.poll_client
        assert client is not None
        clients.append(client)
        if update["update_id"] == 1:  # a bug: a streamed response nobody closes
            request = client.build_request("GET", server.method_url("getMe"))
            leaked.append(await client.send(request, stream=True))
        ids.append(update["update_id"])

    worker = poller(server, leaky)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: len(exits(recorder)) == 1 and server.polls_waiting == 1)
        server.push()
        await until(server, lambda: ids == [1, 2])
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.PoolExhausted)
    assert clients[0] is not clients[1]
    assert clients[0].is_closed
    for response in leaked:
        await response.aclose()


# ----------------------------------------------------------------- answers the API gives


async def test_flood_wait_delays_the_restart_by_retry_after(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """429 with retry_after=0.4 restarts the worker 0.4 s later, and it polls no sooner."""
    server.inject(BotApiFault.error(429, retry_after=0.4))
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        await until(server, lambda: server.calls["getUpdates"] == 2)
        server.push()
        await until(server, lambda: handled(worker) == [1])
    assert reprs(exits(recorder)) == ["FloodWait(seconds=0.4)"]
    (scheduled,) = [e for e in recorder.events if isinstance(e, events.RestartScheduled)]
    assert scheduled.delay == 0.4
    (exited,) = recorder.times(events.ChildExited)
    (restarted,) = recorder.times(events.ChildRestarted)
    assert restarted - exited == pytest.approx(0.4)
    first, second = [r.time for r in server.requests if r.method == "getUpdates"][:2]
    assert second - first == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (BotApiFault.error(429), workers.RateLimited()),
        (BotApiFault.error(401), workers.AuthRevoked(cause="HTTP 401: Unauthorized")),
        (BotApiFault.error(404), workers.AuthRevoked(cause="HTTP 404: Not Found")),
        (BotApiFault.error(409, description="Conflict: x"), workers.Conflict(detail="Conflict: x")),
        (BotApiFault.error(500), workers.ServerError(status=500, detail="Internal Server Error")),
        (
            BotApiFault.error(502, json_body=False),
            workers.ServerError(status=502, detail="Bad Gateway"),
        ),
    ],
    ids=["429", "401", "404", "409", "500", "502-html"],
)
async def test_error_answers_become_typed_failures(
    autojump_clock: MockClock, server: BotApiServer, fault: BotApiFault, expected: workers.Failure
) -> None:
    """Each error status of a poll ends the worker with its typed failure."""
    server.inject(fault)
    recorder = Recorder()
    spec = tree(poller(server), restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await until(server, lambda: server.calls["getUpdates"] == 1)
        await until(None, lambda: bool(exits(recorder)))
    assert reprs(exits(recorder)) == [repr(expected)]


async def test_an_unexpected_error_answer_is_a_crash(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A 400 on getUpdates is the worker's own bug: Crashed, carrying the ApiError."""
    server.inject(BotApiFault.error(400, description="Bad Request: wrong offset"))
    recorder = Recorder()
    async with supervisor.open_supervisor(
        tree(poller(server), restart=specs.TEMPORARY), hooks=[recorder]
    ):
        await until(server, lambda: server.calls["getUpdates"] == 1)
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.Crashed)
    assert isinstance(failure.exception, ApiError)
    assert failure.exception.status == 400


async def test_revoked_token_leaves_a_transient_poller_down(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """After 401 a transient poller stays stopped, showing AuthRevoked, and polls no more."""
    worker = poller(server)
    server.token = "123456:new-token"
    async with supervisor.open_supervisor(tree(worker, restart=specs.TRANSIENT), hooks=[]) as sup:
        await until(server, lambda: sup.which_children()[0].state is ChildState.STOPPED)
        await trio.sleep(0.1)  # time for a poll that should not come
        child = sup.snapshot().children[0]
    assert child.state is ChildState.STOPPED
    assert child.last_exit == "AuthRevoked(cause='HTTP 401: Unauthorized')"
    assert server.calls["getUpdates"] == 1


async def test_a_second_poller_makes_the_first_exit_with_conflict(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """Two pollers on one token: the older one gets 409 and stays down; the newer one polls."""
    first, second = poller(server), poller(server)
    spec = SupervisorSpec(children=[first.child_spec("first", restart=specs.TRANSIENT)])
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await until(server, lambda: server.polls_waiting == 1)
        await sup.start_child(second.child_spec("second", restart=specs.TRANSIENT))
        await until(server, lambda: sup.which_children()[0].state is ChildState.STOPPED)
        server.push()
        await until(server, lambda: handled(second) == [1])
        snapshot = sup.snapshot()
    assert (
        snapshot.children[0].last_exit
        == "Conflict(detail="
        + repr(
            "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running"
        )
        + ")"
    )
    assert handled(first) == []


# ----------------------------------------------------------------- proxies


async def test_proxy_pool_rotates_past_dead_and_refusing_proxies(
    autojump_clock: MockClock, tls_server: BotApiServer, loopback_servers: LoopbackServers
) -> None:
    """A dead proxy, then one answering CONNECT with 502, then a working one: ProxyFailed twice."""
    recorder = Recorder()
    dead, refusing, good = [await loopback_servers.enter(open_connect_proxy()) for _ in range(3)]
    await dead.kill()
    refusing.refuse_status = 502
    worker = poller(tls_server, proxies=[dead.url, refusing.url, good.url], verify=client_tls())
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        tls_server.push()
        await until(tls_server, lambda: handled(worker) == [1])
    assert worker.proxy == good.url
    assert good.tunnels_opened == 1
    failures = exits(recorder)
    assert [type(f) for f in failures] == [workers.ProxyFailed, workers.ProxyFailed]
    assert [f.proxy for f in failures if isinstance(f, workers.ProxyFailed)] == [
        dead.url,
        refusing.url,
    ]
    assert "ConnectError" in str(failures[0])
    assert "502 Bad Gateway" in str(failures[1])


async def test_a_proxy_dying_mid_poll_rotates_to_the_next(
    autojump_clock: MockClock, tls_server: BotApiServer, loopback_servers: LoopbackServers
) -> None:
    """Killing the proxy under a waiting poll moves the worker to the next proxy; no update lost."""
    recorder = Recorder()
    first, second = [await loopback_servers.enter(open_connect_proxy()) for _ in range(2)]
    worker = poller(tls_server, proxies=[first.url, second.url], verify=client_tls())
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        tls_server.push()
        await until(tls_server, lambda: handled(worker) == [1] and tls_server.polls_waiting == 1)
        await first.kill()
        await until(
            tls_server, lambda: second.tunnels_opened == 1 and tls_server.polls_waiting >= 1
        )
        tls_server.push()
        await until(tls_server, lambda: handled(worker) == [1, 2])
    failures = exits(recorder)
    assert [type(f) for f in failures] == [workers.ProxyFailed]
    assert worker.stats.stale_retries == 1


async def test_polling_through_a_socks5_proxy(
    autojump_clock: MockClock, server: BotApiServer, connect_proxy: ConnectProxy
) -> None:
    """The worker polls through a SOCKS5 proxy (httpx[socks])."""
    proxy = connect_proxy
    worker = poller(server, proxies=[proxy.socks5_url])
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        server.push()
        await until(server, lambda: handled(worker) == [1])
    assert proxy.targets == {("127.0.0.1", server.port): 1}


async def test_a_proxy_password_never_reaches_the_failure(autojump_clock: MockClock) -> None:
    """ProxyFailed names the proxy with its password masked."""
    url = f"http://user:secret@127.0.0.1:{closed_port()}"
    worker = PollingLoopWorker(
        PollingConfig(url="https://127.0.0.1:1/bot1:x/getUpdates", proxies=[url]),
        Log(),
        registry=workers.Registry(),
    )
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker, restart=specs.TEMPORARY), hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ProxyFailed)
    assert "secret" not in repr(failure)
    assert failure.proxy is not None
    assert "user:<redacted>@" in failure.proxy


# ----------------------------------------------------------------- handler errors


async def test_a_failing_handler_is_retried_then_the_update_skipped(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """An always-failing update is tried 3 times, reported and skipped; the loop goes on."""
    ids: list[int] = []

    async def picky(update: Update) -> None:
        if update["update_id"] == 2:
            raise ValueError("bad update")
        ids.append(update["update_id"])

    worker = poller(server, picky)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push_many(3)
        await until(server, lambda: ids == [1, 3])
    assert exits(recorder) == []
    assert [(f.update_id, f.attempt, f.final) for f in worker.handler_failures] == [
        (2, 1, False),
        (2, 2, False),
        (2, 3, True),
    ]
    assert (worker.stats.skipped, worker.stats.updates, worker.offset) == (1, 2, 4)


async def test_a_handler_that_recovers_handles_the_update_once(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A handler failing once then succeeding handles the update once, without a skip."""
    calls: list[int] = []

    async def flaky(update: Update) -> None:
        calls.append(update["update_id"])
        if len(calls) == 1:
            raise OSError("database hiccup")

    worker = poller(server, flaky, handler_retry_delay=0.01)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        server.push()
        await until(server, lambda: worker.stats.updates == 1)
    assert calls == [1, 1]
    assert (worker.stats.handler_failures, worker.stats.skipped) == (1, 0)


async def test_stop_policy_leaves_the_worker_down_on_the_update(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """With STOP, a handler failing every attempt stops a transient worker on that update."""

    async def broken(update: Update) -> None:
        raise KeyError("text")

    worker = poller(
        server, broken, max_handler_attempts=2, on_handler_failure=OnHandlerFailure.STOP
    )
    recorder = Recorder()
    async with supervisor.open_supervisor(
        tree(worker, restart=specs.TRANSIENT), hooks=[recorder]
    ) as sup:
        server.push_many(2)
        await until(server, lambda: len(worker.handler_failures) == 2)
        await until(server, lambda: sup.which_children()[0].state is ChildState.STOPPED)
    assert reprs(exits(recorder)) == [
        repr(UpdateFailed(update_id=1, attempts=2, cause="KeyError('text')"))
    ]
    assert worker.offset is None  # still on update 1


async def test_a_flood_wait_inside_the_handler_redelivers_the_update(
    autojump_clock: MockClock,
    server: BotApiServer,
) -> None:
    """A FloodWait from sendMessage in the handler restarts the worker; the update comes again."""
    answers = iter([BotApiFault.error(429, retry_after=0.1, method="sendMessage")])
    server.set_responder("sendMessage", lambda p: next(answers, {"message_id": 1}))
    ids: list[int] = []

    async def reply(update: Update) -> None:
        await worker.call_api("sendMessage", chat_id=1, text="echo")
        ids.append(update["update_id"])

    worker = poller(server, reply)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: ids == [1])
    assert reprs(exits(recorder)) == ["FloodWait(seconds=0.1)"]
    assert server.delivered[1] == 2
    assert worker.stats.handler_failures == 0


async def test_a_failure_from_a_handler_nursery_is_the_worker_exit(
    autojump_clock: MockClock,
    server: BotApiServer,
) -> None:
    """A typed failure raised inside a handler's own nursery ends the worker with that failure."""

    async def fan_out(update: Update) -> None:
        async def send() -> None:
            raise workers.FloodWait(seconds=0.05)

        if update["update_id"] == 1 and not worker.stats.updates:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)

    worker = poller(server, fan_out)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push()
        await until(server, lambda: len(exits(recorder)) == 1)
    assert reprs(exits(recorder)) == ["FloodWait(seconds=0.05)"]
    assert worker.stats.handler_failures == 0


# ----------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "getUpdates"}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"poll_timeout": -1}, "poll_timeout"),
        ({"read_margin": 0}, "read_margin"),
        ({"pool_timeout": float("inf")}, "pool_timeout"),
        ({"limit": 0}, "limit"),
        ({"proxies": ["ftp://127.0.0.1:21"]}, "proxies"),
        ({"proxies": "http://127.0.0.1:3128"}, "proxies"),
        ({"max_handler_attempts": 0}, "max_handler_attempts"),
        ({"verify": "/etc/ssl/ca.pem"}, "verify"),
        ({"body_timeout": 0}, "body_timeout"),
    ],
)
def test_config_names_the_offending_field(overrides: dict[str, Any], field: str) -> None:
    """An invalid configuration value raises PollingConfigError naming its field."""
    values: dict[str, Any] = {"url": "https://127.0.0.1/bot1:x/getUpdates", **overrides}
    with pytest.raises(PollingConfigError) as caught:
        PollingConfig(**values)
    assert caught.value.field == field
    assert repr(field) in str(caught.value)


def test_a_worker_needs_a_handler() -> None:
    """A worker with neither a handler nor an overridden handle_update is refused."""
    with pytest.raises(TypeError, match="handler"):
        PollingLoopWorker(PollingConfig(url="https://127.0.0.1/bot1:x/getUpdates"))


def test_api_base_defaults_to_the_method_directory() -> None:
    """Other API calls go to the poll URL's directory unless api_url says otherwise."""
    polling = PollingConfig(url="https://127.0.0.1/bot1:x/getUpdates")
    assert polling.api_base == "https://127.0.0.1/bot1:x/"
    assert MemoryOffsetStore().offset is None


# ================================================================= hostile servers and proxies
# What a broken or hostile server or proxy does to the worker: a proxy that never
# answers its tunnel request, an answer that never ends or nests too deep, ids
# below the offset, a corrupt offset file, a kill in the middle of the handling.


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_a_proxy_that_never_answers_the_tunnel_request_rotates_to_the_next(
    autojump_clock: MockClock,
    tls_server: BotApiServer,
    loopback_servers: LoopbackServers,
    scheme: str,
) -> None:
    """A proxy taking connections but never answering CONNECT/SOCKS5 is ProxyFailed; next proxy."""
    recorder = Recorder()
    stalled, good = [await loopback_servers.enter(open_connect_proxy()) for _ in range(2)]
    stalled.stall_handshake = True
    urls = [stalled.url_for(scheme), good.url_for(scheme)]
    worker = poller(tls_server, proxies=urls, verify=client_tls(), poll_timeout=30.0)
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        tls_server.push()
        await until(tls_server, lambda: handled(worker) == [1])
    assert (stalled.handshakes_stalled, good.tunnels_opened) == (1, 1)
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ProxyFailed)
    assert failure.proxy == urls[0]
    assert "no tunnel within connect_timeout (1.0s)" in failure.cause


async def test_a_proxy_closing_before_the_tunnel_is_up_is_proxy_failed(
    autojump_clock: MockClock, tls_server: BotApiServer, connect_proxy: ConnectProxy
) -> None:
    """A proxy that hangs up on the CONNECT request is the proxy's failure, not the link's."""
    recorder = Recorder()
    proxy = connect_proxy
    worker = poller(tls_server, proxies=[proxy.url], verify=client_tls())
    proxy.stall_handshake = True
    spec = tree(worker, restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await until(None, lambda: proxy.live_tunnels == 1)
        await proxy.kill()  # cuts the connection waiting for its CONNECT answer
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ProxyFailed)
    assert "RemoteProtocolError" in failure.cause or "ReadError" in failure.cause


async def test_an_endless_answer_fails_typed_at_the_size_cap(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A getUpdates body that never ends stops being read at max_response_bytes: ServerError."""
    cap = 1024 * 1024
    fault = server.inject(BotApiFault.huge_body(None))
    recorder = Recorder()
    spec = tree(poller(server, max_response_bytes=cap), restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
        await until(server, lambda: server.live_connections == 0)
    assert reprs(exits(recorder)) == [
        repr(
            workers.ServerError(
                status=200, detail="the answer is longer than max_response_bytes (1,048,576 bytes)"
            )
        )
    ]
    # the server stopped when the worker hung up: no more than the cap and the
    # kernel's socket buffers were ever sent
    assert fault.bytes_sent < cap + 32 * 1024 * 1024


@pytest.mark.parametrize(
    ("fault", "limits"),
    [
        (BotApiFault.huge_body(512 * 1024), {"max_response_bytes": 1024 * 1024}),
        (BotApiFault.slow_body(5, interval=0.1), {"body_timeout": 0.75}),
    ],
    ids=["long-under-the-size-cap", "slow-within-body-timeout"],
)
async def test_an_answer_within_the_limits_is_read_whole(
    autojump_clock: MockClock, server: BotApiServer, fault: BotApiFault, limits: dict[str, Any]
) -> None:
    """A long answer under max_response_bytes, a slow one within body_timeout: ordinary answers."""
    server.inject(fault)
    worker = poller(server, **limits)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        await until(server, lambda: worker.stats.polls >= 1)
        server.push()
        await until(server, lambda: handled(worker) == [1])
    assert exits(recorder) == []


async def test_a_trickling_answer_fails_typed_at_body_timeout(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """A body trickled a byte every 0.1 s, each within the read timeout, fails at body_timeout."""
    fault = server.inject(BotApiFault.slow_body(None, interval=0.1))
    spec = tree(poller(server, body_timeout=0.75), restart=specs.TEMPORARY)
    recorder = Recorder()
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        begun = trio.current_time()
        await until(None, lambda: bool(exits(recorder)))
        took = trio.current_time() - begun
        await until(server, lambda: server.live_connections == 0)
    assert reprs(exits(recorder)) == [
        repr(
            workers.ServerError(
                status=200, detail="the answer's body did not end within body_timeout (0.75s)"
            )
        )
    ]
    assert 0.75 <= took < 0.8
    # one every 0.1 s; the first send after the hang-up may still succeed
    assert fault.bytes_sent in (7, 8)


async def test_json_nested_too_deep_is_a_server_error(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """An answer nested 100,000 arrays deep is a bad answer (ServerError), not a crash."""
    server.inject(BotApiFault.deep_json(100_000))
    recorder = Recorder()
    spec = tree(poller(server), restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
    assert reprs(exits(recorder)) == [
        repr(workers.ServerError(status=200, detail="the answer is not a list of updates"))
    ]


async def test_updates_below_the_offset_after_an_id_reset_are_skipped_visibly(
    autojump_clock: MockClock, server: BotApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After a server-side id reset, SKIP drops the old-numbered updates with a WARNING and exit."""
    worker = poller(server)
    recorder = Recorder()
    spec = tree(worker, restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        server.push_many(3)
        await until(server, lambda: handled(worker) == [1, 2, 3] and server.polls_waiting == 1)
        server.reset_update_ids(1)
        server.push_many(2)
        await until(None, lambda: bool(exits(recorder)))
    assert reprs(exits(recorder)) == [
        repr(workers.StaleUpdates(offset=4, count=2, first_id=1, last_id=2, handled=False))
    ]
    assert handled(worker) == [1, 2, 3]
    assert (worker.stats.stale_updates, worker.stats.duplicates_dropped) == (2, 2)
    (record,) = [r for r in caplog.records if "below the offset" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "update_id 1..2" in record.getMessage()


async def test_resync_follows_the_server_ids_after_a_reset(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """With RESYNC the updates of the new numbering are handled and the offset follows them."""
    worker = poller(server, on_stale_update=workers.OnStaleUpdate.RESYNC)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker), hooks=[recorder]):
        server.push_many(3)
        await until(server, lambda: handled(worker) == [1, 2, 3] and server.polls_waiting == 1)
        server.reset_update_ids(1)
        server.push_many(2)
        await until(server, lambda: handled(worker) == [1, 2, 3, 1, 2])
        server.push()
        await until(server, lambda: handled(worker) == [1, 2, 3, 1, 2, 3])
    assert reprs(exits(recorder)) == [
        repr(workers.StaleUpdates(offset=4, count=1, first_id=1, last_id=1, handled=True))
    ]
    assert worker.offset == 4


@pytest.mark.parametrize(
    "text", ["-5", "1_5", str(10**30), " +11 ", "007", "", "5 \n", "5\n\n", "٣"]
)
async def test_file_offset_store_refuses_a_non_canonical_offset(tmp_path: Path, text: str) -> None:
    """Only what save() writes (a canonical non-negative integer below 2**63) loads."""
    path = tmp_path / "offset.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PollingConfigError, match="does not hold an offset"):
        await FileOffsetStore(path).load()


async def test_a_corrupt_offset_file_fails_the_start_naming_the_file(
    server: BotApiServer, tmp_path: Path
) -> None:
    """A worker whose offset file holds " +11 " does not start, and the error names the file."""
    path = tmp_path / "offset.txt"
    path.write_text(" +11 ")
    worker = PollingLoopWorker(
        config(server), Log(), offsets=FileOffsetStore(path), registry=workers.Registry()
    )
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with supervisor.open_supervisor(tree(worker), hooks=[]):
            pass
    assert str(path) in repr(caught.value.__cause__) + repr(caught.value)
    assert server.calls["getUpdates"] == 0


async def test_file_offset_store_removes_temporary_files_a_kill_left(tmp_path: Path) -> None:
    """Loading removes <name>.<8 chars>.tmp files of saves cut short, and nothing else."""
    path = tmp_path / "offset.txt"
    path.write_text("7\n")
    for name in ("offset.txt.ab_c1234.tmp", "offset.txt.zz99zz99.tmp"):
        (tmp_path / name).write_text("8\n")
    kept = ["offset.txt.keep", "offset.txt.toolongname.tmp", "other.txt.ab_c1234.tmp"]
    for name in kept:
        (tmp_path / name).write_text("x")
    assert await FileOffsetStore(path).load() == 7
    assert sorted(os.listdir(tmp_path)) == sorted(["offset.txt", *kept])


async def test_a_negative_update_id_is_a_server_error_and_never_an_offset(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """An update_id of -5 is a bad answer: no handler call, no poll with offset -4."""
    server.set_responder("getUpdates", lambda p: [{"update_id": -5}])
    worker = poller(server)
    recorder = Recorder()
    async with supervisor.open_supervisor(tree(worker, restart=specs.TEMPORARY), hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    assert isinstance(failure, workers.ServerError)
    assert "update_id in 0..2**63-2" in failure.detail
    assert handled(worker) == []
    assert worker.offset is None


_ROOT = Path(__file__).resolve().parents[1]
_KILLED_CHILD = """
import os, sys, trio, supervisor, workers
from specs import SupervisorSpec
url, offsets, log = sys.argv[1:4]

async def handle(update):
    await trio.sleep(0.002)
    os.write(LOG, b"%d\\n" % update["update_id"])

LOG = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
worker = workers.PollingLoopWorker(
    workers.PollingConfig(url=url, poll_timeout=5.0, limit=7),
    handle,
    offsets=workers.FileOffsetStore(offsets, fsync=False),
)
supervisor.run(SupervisorSpec(children=[worker.reconnecting_child_spec("poller")]))
"""


async def test_a_killed_process_repeats_at_most_one_update_per_kill(
    server: BotApiServer, tmp_path: Path
) -> None:
    """kill -9 in the middle of the handling: nothing lost, at most one update repeated per kill."""
    total, kills = 120, 4
    server.push_many(total)
    log = tmp_path / "handled"
    log.touch()

    def ids() -> list[int]:
        return [int(line) for line in log.read_text().split()]

    args = [sys.executable, "-c", _KILLED_CHILD, server.method_url("getUpdates")]
    args += [str(tmp_path / "offset.txt"), str(log)]
    for run in range(kills + 1):
        last = run == kills
        goal = len(ids()) + 10
        process = await trio.lowlevel.open_process(args, cwd=_ROOT)
        try:
            with trio.fail_after(60):  # a subprocess: only the real clock can wait for it
                while (len(set(ids())) < total) if last else (len(ids()) < goal):  # noqa: ASYNC110
                    await trio.sleep(0.005)  # another process writes the file: poll it
        finally:
            process.kill()
            await process.wait()
    handled_ids = ids()
    assert sorted(set(handled_ids)) == list(range(1, total + 1))  # nothing lost
    assert len(handled_ids) - total <= kills + 1  # each kill repeats one at most


@pytest.mark.parametrize("status", [401, 403, 404, 409, 429, 500, 502, 503])
async def test_a_poll_maps_each_status_by_the_one_table(
    autojump_clock: MockClock, server: BotApiServer, status: int
) -> None:
    """A poll's error status ends the worker with the failure STATUS_FAILURES (or 5xx) names."""
    server.inject(BotApiFault.error(status))
    recorder = Recorder()
    spec = tree(poller(server), restart=specs.TEMPORARY)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await until(None, lambda: bool(exits(recorder)))
    (failure,) = exits(recorder)
    expected = workers.STATUS_FAILURES.get(status, workers.ServerError)
    assert type(failure) is expected is type(workers.status_failure(status))


async def test_call_api_leaves_403_to_the_request(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """On call_api, 403 ("bot was blocked by the user") is the request's ApiError."""
    blocked = "Forbidden: bot was blocked by the user"
    server.set_responder("sendMessage", lambda p: BotApiFault.error(403, description=blocked))
    worker = poller(server)
    async with supervisor.open_supervisor(tree(worker), hooks=[]):
        with pytest.raises(ApiError) as error:
            await worker.call_api("sendMessage", chat_id=1, text="x")
    assert (error.value.status, error.value.description) == (403, blocked)


async def test_the_reconnecting_spec_of_a_revoked_token_sends_one_poll(
    autojump_clock: MockClock, server: BotApiServer
) -> None:
    """As in the docstring's example: a revoked token polls once and stays down; the tree lives."""
    worker = poller(server)
    server.token = "123456:new-token"
    spec = SupervisorSpec(children=[worker.reconnecting_child_spec("poller")])
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await until(server, lambda: server.calls["getUpdates"] == 1)
        await trio.sleep(60)  # virtual time for restarts that must not come
        (outer,) = sup.which_children()
        assert outer.state is ChildState.RUNNING
    assert server.calls["getUpdates"] == 1


def test_every_worker_example_uses_the_reconnecting_spec() -> None:
    """No docstring example in workers builds a bare child_spec (no backoff) for a worker."""
    import inspect

    import workers._polling
    import workers._pyrogram
    import workers._websocket

    examples = []
    for module in (workers._polling, workers._websocket, workers._pyrogram):
        for text in [module.__doc__ or ""] + [
            obj.__doc__ or "" for _, obj in inspect.getmembers(module, inspect.isclass)
        ]:
            if "Example::" in text:
                examples.append(text)
    assert examples
    assert all(".child_spec(" not in text for text in examples)
    assert any("reconnecting_child_spec(" in text for text in examples)
