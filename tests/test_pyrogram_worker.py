"""Tests for the Pyrogram client worker, against the loopback MTProto server.

Every client here is a real Pyrogram 2.0 ``Client`` on its own trio-asyncio loop,
talking MTProto over TCP to the loopback MTProto server of ``workers.testing`` on
127.0.0.1 (a free port). Everything runs in the test's trio process, on virtual time
(``autojump_clock``, held while Pyrogram's crypto runs in worker threads: see
``conftest.py``), so durations are asserted exactly and nothing depends on the
machine's speed; real latencies are in ``benchmarks/bench_pyrogram.py``.

Pyrogram appends unknown RPC errors to ``unknown_errors.txt`` in the current
directory: every test runs in its own temporary directory (``in_tmp_cwd``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pyrogram
import pytest
import trio
import trio.testing
from pyrogram import errors
from pyrogram.handlers.raw_update_handler import RawUpdateHandler
from trio.testing import MockClock

import specs
import supervisor
import workers
from specs import SupervisorSpec
from supervisor import ChildState, events
from workers._aio_bridge import aio_call, open_bridged_loop, pending_tasks
from workers._pyrogram import (
    ACCOUNT_BACKOFF,
    PyrogramClientWorker,
    PyrogramConfig,
    PyrogramConfigError,
    PyrogramUpdate,
    RequestRejected,
    SessionRenewed,
    UpdatesStalled,
    account_pool,
)
from workers._tunnel import tunnel_failure
from workers.testing import (
    AUTH_KEY_DUPLICATED,
    Account,
    ConnectProxy,
    MTProtoServer,
    RpcFailure,
    open_connect_proxy,
    session_string,
)
from workers.testing.pytest_plugin import LoopbackServers

raw: Any = pyrogram.raw

API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent
#: How long a test waits for what must happen (a hang fails, it does not block CI).
PATIENCE = 10.0
#: A backoff so long that a failed worker is not restarted during the test.
HOLD = specs.Backoff(wait_initial=60, wait_max=60, wait_jitter=0)
#: A backoff that restarts a failed worker after 0.1 s, every time.
QUICK = specs.Backoff(wait_initial=0.1, wait_max=0.1, wait_jitter=0)


#: Pyrogram writes unknown_errors.txt to the current directory: each test has its own.
pytestmark = pytest.mark.usefixtures("in_tmp_cwd")


@pytest.fixture
def server(mtproto_server: MTProtoServer) -> MTProtoServer:
    """A loopback MTProto server (the plugin's) that every Pyrogram data centre points at."""
    return mtproto_server


@pytest.fixture
def registry() -> workers.Registry:
    """A registry of this test's own, so names never clash across tests."""
    return workers.Registry()


class Watch:
    """A supervisor hook that keeps every event, for a test to wait on."""

    def __init__(self) -> None:
        self.events: list[supervisor.Event] = []
        self._changed = trio.lowlevel.ParkingLot()

    def __call__(self, event: supervisor.Event) -> None:
        self.events.append(event)
        self._changed.unpark_all()

    def of(self, kind: type[Any], supervisor: str | None = None) -> list[Any]:
        """The events of a kind (of one supervisor), in order."""
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (supervisor is None or e.supervisor == supervisor)
        ]

    async def wait_for(self, kind: type[Any], count: int = 1, supervisor: str | None = None) -> Any:
        """The ``count``-th event of a kind, once it has happened (within PATIENCE)."""
        with trio.fail_after(PATIENCE):
            while len(self.of(kind, supervisor)) < count:
                await self._changed.park()
        return self.of(kind, supervisor)[count - 1]


def config(account: Account, name: str = "acct", **overrides: Any) -> PyrogramConfig:
    """A configuration with test-sized timeouts."""
    fields: dict[str, Any] = {
        "ping_interval": 0.5,
        "ping_timeout": 1.0,
        "connect_timeout": 2.0,
        "stop_timeout": 1.0,
    }
    fields.update(overrides)
    return PyrogramConfig(
        name=name, api_id=API_ID, api_hash=API_HASH, session_string=account.session_string, **fields
    )


@asynccontextmanager
async def running(
    worker: PyrogramClientWorker,
    watch: Watch | None = None,
    *,
    restart: specs.Restart = specs.TRANSIENT,
    backoff: specs.Backoff | None = HOLD,
    intensity: int = 100,
) -> AsyncIterator[supervisor.SupervisorHandle]:
    """The worker as child "acct" of a supervisor, for the block."""
    spec = SupervisorSpec(
        children=[worker.child_spec("acct", restart=restart, shutdown=2.0)],
        intensity=intensity,
        period=5.0,
        backoff=backoff,
    )
    async with supervisor.open_supervisor(spec, hooks=[watch] if watch else []) as sup:
        yield sup


async def get_me(registry: workers.Registry, name: str) -> Any:
    """``get_me()`` through the worker's mailbox; an error reply fails the test."""
    reply = await registry.call(name, ("get_me",))
    if isinstance(reply, RequestRejected):
        reply.unwrap()
    return reply


def same(failure: BaseException | None, expected: workers.Failure) -> bool:
    """Typed failures compare by identity (they are exceptions): compare their values."""
    return repr(failure) == repr(expected)


# --------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "a/b"),
        ("api_id", 0),
        ("api_id", "12345"),
        ("api_hash", ""),
        ("session_string", 5),
        ("bot_token", ""),
        ("workdir", 3),
        ("connect_timeout", 0),
        ("ping_interval", float("inf")),
        ("ping_timeout", True),
        ("reconnect_timeout", 0),
        ("reconnect_timeout", "5"),
        ("no_updates_timeout", -1),
        ("stop_timeout", float("nan")),
        ("handler_workers", 0),
        ("proxy", {"scheme": "ftp", "hostname": "h", "port": 1}),
        ("proxy", {"scheme": "socks5", "hostname": "h", "port": 70000}),
        ("proxy", "socks5://h:1"),
        ("ipv6", "yes"),
    ],
)
def test_config_rejects_an_invalid_field_by_name(field: str, value: object) -> None:
    """An invalid field raises PyrogramConfigError (a ValueError and a TypeError) naming it."""
    fields: dict[str, Any] = {
        "name": "acct",
        "api_id": API_ID,
        "api_hash": API_HASH,
        "session_string": "s",
        field: value,
    }
    with pytest.raises(PyrogramConfigError) as caught:
        PyrogramConfig(**fields)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TypeError)
    assert repr(field) in str(caught.value)


def test_config_needs_exactly_one_source_of_credentials() -> None:
    """No credentials, or a session string and a bot token together, are refused by field."""
    with pytest.raises(PyrogramConfigError, match="session_string"):
        PyrogramConfig(name="a", api_id=API_ID, api_hash=API_HASH)
    with pytest.raises(PyrogramConfigError, match="bot_token"):
        PyrogramConfig(
            name="a", api_id=API_ID, api_hash=API_HASH, session_string="s", bot_token="1:x"
        )


def test_config_keeps_secrets_out_of_repr_and_stays_hashable(tmp_path: Path) -> None:
    """repr() shows no api_hash, session string or token; a proxy mapping is frozen."""
    made = PyrogramConfig(
        name="a",
        api_id=API_ID,
        api_hash="hash-s3cr3t",
        bot_token="1:token-s3cr3t",
        workdir=tmp_path,
        proxy={"scheme": "socks5", "hostname": "127.0.0.1", "port": 1080, "password": "s3cr3t"},
    )
    assert "s3cr3t" not in repr(made)
    assert made.session_file == str(tmp_path / "a.session")
    assert made.proxy_dict == {
        "scheme": "socks5",
        "hostname": "127.0.0.1",
        "port": 1080,
        "password": "s3cr3t",
    }
    assert hash(made) == hash(attrs.evolve(made))


def test_worker_takes_only_a_config_and_handler_classes() -> None:
    """The worker refuses anything but a PyrogramConfig, and handlers that are not classes."""
    with pytest.raises(TypeError, match="PyrogramConfig"):
        PyrogramClientWorker({"name": "acct"})  # type: ignore[arg-type]
    made = PyrogramConfig(name="a", api_id=API_ID, api_hash=API_HASH, session_string="s")
    with pytest.raises(TypeError, match="handler classes"):
        PyrogramClientWorker(made, handlers=[print])  # type: ignore[list-item]


def test_reconnecting_child_spec_gives_the_account_its_own_backoff() -> None:
    """reconnecting_child_spec wraps the worker in a one-child supervisor with the backoff."""
    made = PyrogramConfig(name="a", api_id=API_ID, api_hash=API_HASH, session_string="s")
    child = PyrogramClientWorker(made).reconnecting_child_spec("a")
    assert isinstance(child.start, SupervisorSpec)
    assert child.start.backoff == ACCOUNT_BACKOFF
    assert child.start.children[0].restart is specs.TRANSIENT


# --------------------------------------------------------------- classification


def _worker_classify(error: BaseException) -> workers.Failure:
    return PyrogramClientWorker.classifier.classify(error)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.FloodWait(value="30"), workers.FloodWait(seconds=30)),
        (errors.Flood(value="[420 FLOOD_PREMIUM_WAIT_5]"), workers.FloodWait(seconds=5)),
        (errors.AuthKeyUnregistered(), workers.AuthRevoked(cause="AUTH_KEY_UNREGISTERED")),
        (errors.AuthKeyDuplicated(), workers.AuthRevoked(cause="AUTH_KEY_DUPLICATED")),
        (errors.RpcCallFail(), workers.ServerError(status=500, detail="RPC_CALL_FAIL")),
        (ConnectionError(), workers.ConnectionLost(reason="Pyrogram's connection attempts failed")),
        (
            OSError(BrokenPipeError(32, "Broken pipe")),
            workers.ConnectionLost(reason="send failed: [Errno 32] Broken pipe"),
        ),
        (TimeoutError("Request timed out"), workers.HeartbeatTimeout()),
        (
            ConnectionRefusedError(111, "refused"),
            workers.ConnectionLost(reason="ConnectionRefusedError: [Errno 111] refused"),
        ),
    ],
)
def test_pyrogram_failures_are_typed(error: Exception, expected: workers.Failure) -> None:
    """Pyrogram's exceptions map to typed failures (DEFAULT plus the worker's own rule)."""
    assert same(_worker_classify(error), expected)


def test_rule_leaves_other_exceptions_alone() -> None:
    """The rule passes on what is not Pyrogram's (another rule, or Crashed, decides)."""
    assert workers.pyrogram_client_rule(ValueError("x")) is None
    assert workers.pyrogram_client_rule(TimeoutError("something else")) is None
    assert workers.pyrogram_client_rule(errors.FloodWait(value="3")) is None  # DEFAULT knows it


# --------------------------------------------------------------- the session


async def test_connects_and_answers_get_me(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """init connects and authorises; get_me() works through the mailbox and worker.me."""
    account = server.new_account(first_name="Ada")
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker):
        me = await get_me(registry, "acct")
        assert (me.id, me.first_name) == (account.user_id, "Ada")
        assert worker.me.id == account.user_id
        assert worker.running
    assert not worker.running
    assert server.call_count("users.GetFullUser", account) == 2  # init's, then ours
    assert server.live_connections() == 0  # disconnected on the way out


async def test_direct_calls_run_on_the_worker_loop(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """worker.aio() and worker.invoke() await the client's coroutines from any trio task."""
    account = server.new_account()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker):
        me = await worker.aio(worker.client.get_me)
        nearest = await worker.invoke(raw.functions.help.GetNearestDc())
    assert me.id == account.user_id
    assert nearest.this_dc == server.dc_id
    with pytest.raises(workers.NotRunning):
        await worker.aio(asyncio.sleep, 0)


async def test_request_error_is_the_reply_and_the_worker_goes_on(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A request's own error comes back as RequestRejected; the session is not restarted."""
    account = server.new_account()
    watch = Watch()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker, watch):
        reply = await registry.call("acct", ("invoke", raw.functions.help.GetAppConfig(hash=0)))
        assert isinstance(reply, RequestRejected)
        assert isinstance(reply.error, errors.MethodInvalid)
        with pytest.raises(errors.MethodInvalid):
            reply.unwrap()
        bad = await registry.call("acct", ("no_such_method", 1))
        assert isinstance(bad, RequestRejected)
        assert isinstance(bad.error, TypeError)
        await get_me(registry, "acct")
    assert watch.of(events.ChildExited) == []


async def test_mailbox_takes_a_function_of_the_client_and_casts(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A request may be a function of the client; a cast runs a request without a reply."""
    account = server.new_account()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker):
        nearest = await registry.call(
            "acct", lambda c: c.invoke(raw.functions.help.GetNearestDc(), retries=0)
        )
        assert nearest.this_dc == server.dc_id
        await registry.cast("acct", ("invoke", raw.functions.help.GetNearestDc()))
        await server.wait_for_calls("help.GetNearestDc", 2, account)


async def test_fail_ends_the_incarnation_with_the_given_failure(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """worker.fail(FloodWait(...)) pauses the account for its seconds, as a server's would."""
    account = server.new_account()
    watch = Watch()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker, watch):
        with pytest.raises(TypeError):
            worker.fail(ValueError("not a failure"))  # type: ignore[arg-type]
        worker.fail(workers.FloodWait(seconds=0.3))
        exited = await watch.wait_for(events.ChildExited)
        restarted = await watch.wait_for(events.ChildRestarted)
        await get_me(registry, "acct")
    assert same(exited.reason.exception, workers.FloodWait(seconds=0.3))
    assert restarted.time - exited.time == pytest.approx(0.3)
    with pytest.raises(workers.NotRunning):
        worker.fail(workers.ConnectionLost())


async def test_error_nobody_awaited_on_the_loop_ends_the_incarnation_typed(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A Pyrogram background task's unretrieved error (here AUTH_KEY_DUPLICATED) is typed."""
    account = server.new_account()
    watch = Watch()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker, watch):
        worker.loop.call_exception_handler(
            {
                "message": "Task exception was never retrieved",
                "exception": errors.AuthKeyDuplicated(),
            }
        )
        exited = await watch.wait_for(events.ChildExited)
    assert same(exited.reason.exception, workers.AuthRevoked(cause="AUTH_KEY_DUPLICATED"))


async def test_unknown_rpc_error_is_written_to_the_working_directory(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry, tmp_path: Path
) -> None:
    """Pyrogram logs unknown errors to unknown_errors.txt in the cwd (a tmp dir), not the repo."""
    before = (REPO / "unknown_errors.txt").exists()
    account = server.new_account()
    server.set_responder("help.GetAppConfig", lambda who, q: RpcFailure(400, "BRAND_NEW_THING"))
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker):
        reply = await registry.call("acct", ("invoke", raw.functions.help.GetAppConfig(hash=0)))
        assert isinstance(reply.error, errors.BadRequest)
        await get_me(registry, "acct")
    assert "BRAND_NEW_THING" in (tmp_path / "unknown_errors.txt").read_text()
    assert (REPO / "unknown_errors.txt").exists() == before


async def test_bot_token_logs_in_and_keeps_its_session_file(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry, tmp_path: Path
) -> None:
    """A bot logs in with its token; with a workdir its key is saved, then reused from the file."""
    bot = server.new_account(first_name="Botty", is_bot=True)
    assert bot.bot_token is not None
    made = PyrogramConfig(
        name="botty", api_id=API_ID, api_hash=API_HASH, bot_token=bot.bot_token, workdir=tmp_path
    )
    async with running(PyrogramClientWorker(made, registry=registry)):
        assert (await get_me(registry, "botty")).is_bot
    assert (tmp_path / "botty.session").exists()
    from_file = PyrogramConfig(name="botty", api_id=API_ID, api_hash=API_HASH, workdir=tmp_path)
    async with running(PyrogramClientWorker(from_file, registry=registry)):
        assert (await get_me(registry, "botty")).id == bot.user_id
    assert server.call_count("auth.ImportBotAuthorization") == 1
    assert server.call_count("ReqPqMulti") == 1  # one key exchange, then the file's key


async def test_missing_session_file_is_auth_revoked_without_connecting(
    autojump_clock: MockClock, server: MTProtoServer, tmp_path: Path
) -> None:
    """A workdir without the session file fails the start with AuthRevoked, creating nothing."""
    made = PyrogramConfig(name="ghost", api_id=API_ID, api_hash=API_HASH, workdir=tmp_path)
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(PyrogramClientWorker(made)):
            pass  # pragma: no cover
    assert isinstance(caught.value.error, workers.AuthRevoked)
    assert await trio.to_thread.run_sync(os.listdir, tmp_path) == []
    assert server.connections_accepted == 0


async def test_session_that_is_not_logged_in_is_auth_revoked(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """connect() returning False (no user in the session) fails the start with AuthRevoked."""
    account = server.new_account()
    anonymous = session_string(
        dc_id=server.dc_id,
        api_id=API_ID,
        test_mode=False,
        auth_key=account.auth_key,
        user_id=0,
        is_bot=False,
    )
    made = PyrogramConfig(name="anon", api_id=API_ID, api_hash=API_HASH, session_string=anonymous)
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(PyrogramClientWorker(made)):
            pass  # pragma: no cover
    assert same(caught.value.error, workers.AuthRevoked(cause="the session is not logged in"))


async def test_revoked_session_fails_the_first_start(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A revoked session connects (Ping works) but get_me() in init makes it AuthRevoked."""
    account = server.new_account()
    server.revoke(account)
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(PyrogramClientWorker(config(account))):
            pass  # pragma: no cover
    assert same(caught.value.error, workers.AuthRevoked(cause="AUTH_KEY_UNREGISTERED"))


async def test_duplicated_key_fails_the_start_at_once(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """406 AUTH_KEY_DUPLICATED escapes Pyrogram's connect loop and is AuthRevoked."""
    account = server.new_account()
    server.fail_always(account, "InitConnection", AUTH_KEY_DUPLICATED)
    started = trio.current_time()
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(PyrogramClientWorker(config(account))):
            pass  # pragma: no cover
    assert same(caught.value.error, workers.AuthRevoked(cause="AUTH_KEY_DUPLICATED"))
    assert trio.current_time() - started == 0  # not the connect deadline


async def test_auth_key_unregistered_leaves_a_transient_worker_down_and_visible(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A 401 on a call ends the worker with AuthRevoked; it stays down, in the snapshot."""
    account = server.new_account()
    watch = Watch()
    worker = PyrogramClientWorker(config(account), registry=registry)
    async with running(worker, watch, backoff=None) as sup:
        server.revoke(account)
        reply = await registry.call("acct", ("get_me",))
        assert isinstance(reply.error, errors.AuthKeyUnregistered)
        exited = await watch.wait_for(events.ChildExited)
        assert same(exited.reason.exception, workers.AuthRevoked(cause="AUTH_KEY_UNREGISTERED"))
        await trio.sleep(0.2)  # a restart would have happened by now
        (child,) = sup.snapshot().children
        assert child.state is ChildState.STOPPED
        assert child.last_exit is not None
        assert "AuthRevoked" in child.last_exit
        assert child.incarnation == 1
        assert registry.whereis("acct") is None
        server.revoke(account, revoked=False)  # logged in again: the operator restarts it
        await sup.restart_child("acct")
        await get_me(registry, "acct")


async def test_revoked_on_a_restart_stays_down_instead_of_retrying(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A session revoked while the link was down ends the next incarnation, not its start."""
    account = server.new_account()
    watch = Watch()
    # the restart may connect while still black-holed: Pyrogram retries its first ping
    # after 2 s, within this connect_timeout
    made = config(account, ping_interval=0.2, connect_timeout=5.0)
    worker = PyrogramClientWorker(made, registry=registry)
    async with running(worker, watch, backoff=None) as sup:
        server.revoke(account)
        server.blackhole(account)
        first = await watch.wait_for(events.ChildExited)
        assert isinstance(first.reason.exception, workers.HeartbeatTimeout)
        server.blackhole(account, on=False)
        second = await watch.wait_for(events.ChildExited, 2)
        assert isinstance(second.reason.exception, workers.AuthRevoked)
        assert sup.which_children()[0].state is ChildState.STOPPED
    assert watch.of(events.StartFailed) == []


async def test_blackholed_link_is_found_by_the_heartbeat_within_its_timeout(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A link that stops answering ends the worker with HeartbeatTimeout in interval + timeout."""
    account = server.new_account()
    watch = Watch()
    made = config(account, ping_interval=0.2, ping_timeout=0.5)
    async with running(PyrogramClientWorker(made, registry=registry), watch):
        await get_me(registry, "acct")
        server.blackhole(account)
        silenced = trio.current_time()
        exited = await watch.wait_for(events.ChildExited)
    assert same(exited.reason.exception, workers.HeartbeatTimeout(after=0.5))
    # at most one ping interval, then the ping's timeout; Pyrogram's own read timeout is 10 s
    assert 0.5 <= exited.time - silenced <= 0.2 + 0.5


async def test_a_dropped_connection_pyrogram_restores_at_once_is_not_a_restart(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Pyrogram reconnects a dropped TCP connection itself; the heartbeat sees it back in time."""
    account = server.new_account()
    watch = Watch()
    async with running(PyrogramClientWorker(config(account), registry=registry), watch):
        server.drop(account)
        with trio.fail_after(PATIENCE):
            await server.wait_for_calls("InitConnection", 2, account)
        await trio.sleep(0.6)  # the heartbeat pinged after the disconnect
        await get_me(registry, "acct")
    assert watch.of(events.ChildExited) == []


async def test_a_session_pyrogram_restores_within_reconnect_timeout_is_not_a_restart(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Refused past ping_timeout, back within reconnect_timeout: no restart, no ping while down."""
    account = server.new_account()
    watch = Watch()
    made = config(account, ping_interval=10.0, ping_timeout=1.0, reconnect_timeout=5.0)
    async with running(PyrogramClientWorker(made, registry=registry), watch):
        await get_me(registry, "acct")
        pings = account.calls["Ping"]
        await server.stop_listening()
        await trio.sleep(2.5)  # Pyrogram's tries at 0, 1 and 2 s are refused
        await server.start_listening()
        with trio.fail_after(PATIENCE):
            await server.wait_for_calls("InitConnection", 2, account)
        back = trio.current_time()
        assert (await get_me(registry, "acct")).id == account.user_id
        assert server.live_connections(account) == 1
        # Pyrogram's own Ping started the new connection: the heartbeat's next one
        # follows its interval, on the same session
        assert account.calls["Ping"] == pings + 1
        await trio.sleep_until(back + 10.0 + 0.001)
        assert account.calls["Ping"] == pings + 2
    assert watch.of(events.ChildExited) == []
    assert account.calls["InitConnection"] == 2


async def test_a_session_not_back_within_reconnect_timeout_is_connection_lost(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A data centre refusing for longer ends the session after exactly reconnect_timeout."""
    account = server.new_account()
    worker = PyrogramClientWorker(
        config(account, ping_interval=0.5, ping_timeout=1.0, reconnect_timeout=3.0),
        registry=registry,
    )
    async with running(worker, watch := Watch()):
        await get_me(registry, "acct")
        await server.stop_listening()
        refused = trio.current_time()
        await trio.sleep(3.0 - 0.001)
        assert worker.running  # past ping_interval + ping_timeout, the session is waited for
        exited = await watch.wait_for(events.ChildExited)
    assert same(
        exited.reason.exception,
        workers.ConnectionLost(reason="session lost and not back within reconnect_timeout=3.0s"),
    )
    # the deadline, then perhaps a round or two of the bridge re-cancelling Pyrogram's
    # reconnect in the goodbye
    assert 3.0 <= exited.time - refused < 3.0 + 0.1


async def test_server_restart_is_followed_by_a_reconnect(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Server down for longer than the ping timeout: the worker restarts and reconnects."""
    account = server.new_account()
    watch = Watch()
    quick = specs.Backoff(wait_initial=0.1, wait_max=0.2, wait_jitter=0)
    made = config(account, ping_interval=0.2, connect_timeout=0.5)
    async with running(PyrogramClientWorker(made, registry=registry), watch, backoff=quick):
        await server.stop_listening()
        exited = await watch.wait_for(events.ChildExited)
        assert isinstance(exited.reason.exception, workers.ConnectionLost)
        await trio.sleep(0.5)
        await server.start_listening()
        await watch.wait_for(events.ChildRestarted)
        assert (await get_me(registry, "acct")).id == account.user_id
        assert server.live_connections(account) == 1


@pytest.mark.parametrize("outage", ["refused", "blackholed"])
async def test_data_centre_down_at_start_fails_within_connect_timeout(
    autojump_clock: MockClock, server: MTProtoServer, outage: str
) -> None:
    """Pyrogram's connect() never gives up; the worker's start does, after connect_timeout."""
    account = server.new_account()
    if outage == "refused":
        await server.stop_listening()
    else:
        server.blackhole()
    started = trio.current_time()
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with running(PyrogramClientWorker(config(account, connect_timeout=0.5))):
            pass  # pragma: no cover
    assert same(
        caught.value.error, workers.ConnectionLost(reason="no session within connect_timeout=0.5s")
    )
    # the deadline, then perhaps a round or two of the bridge re-cancelling Pyrogram's connect
    assert 0.5 <= trio.current_time() - started < 0.5 + 0.1


async def test_data_centre_down_is_retried_with_backoff(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """While the data centre is down each start is bounded and the next waits longer."""
    account = server.new_account()
    watch = Watch()
    backoff = specs.Backoff(wait_initial=0.1, wait_max=1.0, wait_jitter=0, wait_exp_base=2)
    made = config(account, ping_interval=0.2, connect_timeout=0.3)
    worker = PyrogramClientWorker(made, registry=registry)
    async with running(worker, watch, backoff=backoff):
        await server.stop_listening()
        await watch.wait_for(events.StartFailed, 3)
        await server.start_listening()
        await watch.wait_for(events.ChildRestarted)
        await get_me(registry, "acct")
    delays = [e.delay for e in watch.of(events.RestartScheduled)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    failures = watch.of(events.StartFailed)
    assert all(isinstance(f.error, workers.ConnectionLost) for f in failures)
    for scheduled, failed in zip(watch.of(events.RestartScheduled), failures, strict=False):
        # each failed start began when its restart was due, and took connect_timeout
        assert failed.time - (scheduled.time + scheduled.delay) == pytest.approx(0.3)


async def test_no_asyncio_task_or_socket_is_left_when_a_worker_exits(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Stopped or failed, an incarnation leaves no asyncio task, trio task or connection."""
    account = server.new_account()
    send, _receive = trio.open_memory_channel[PyrogramUpdate](10)
    watch = Watch()
    worker = PyrogramClientWorker(
        config(account, ping_interval=0.2), updates=send, registry=registry
    )
    later = specs.Backoff(wait_initial=0.3, wait_max=0.3, wait_jitter=0)
    async with running(worker, watch, backoff=later) as sup:
        loop = worker.loop
        assert len(pending_tasks(loop)) > 3  # Pyrogram's: recv, ping, dispatcher, watchdog
        server.blackhole(account)
        await watch.wait_for(events.ChildExited)  # a failure ends the first incarnation
        assert loop.is_closed()
        assert pending_tasks(loop) == set()
        server.blackhole(account, on=False)
        await watch.wait_for(events.ChildRestarted)
        second = worker.loop
        await sup.terminate_child("acct")  # a stop ends the second
        assert pending_tasks(second) == set()
        await trio.testing.wait_all_tasks_blocked()
        root = trio.lowlevel.current_root_task()
        assert root is not None
        left = [t.name for t in _tasks_below(root)]
    assert not [name for name in left if "pyrogram" in name.lower() or "acct" in name]
    assert server.live_connections(account) == 0


def _tasks_below(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    found = [task]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.extend(_tasks_below(child))
    return found


# --------------------------------------------------------------- the asyncio bridge


async def test_bridge_runs_a_one_thread_pool_in_submission_order(autojump_clock: MockClock) -> None:
    """Jobs for a plain ThreadPoolExecutor(1) start in the order submitted, one at a time."""
    order: list[int] = []
    async with open_bridged_loop() as loop:

        async def submit_all() -> None:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                jobs = [loop.run_in_executor(pool, order.append, n) for n in range(50)]
                await asyncio.gather(*jobs)

        await aio_call(submit_all)
    assert order == list(range(50))


async def test_bridge_honours_max_workers() -> None:
    """At most max_workers jobs of one executor run at once."""
    running_now, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def job() -> None:
        nonlocal running_now, most
        with lock:
            running_now += 1
            most = max(most, running_now)
        release.wait(PATIENCE)  # a blocking job, in its worker thread
        with lock:
            running_now -= 1

    async with open_bridged_loop() as loop, trio.open_nursery() as nursery:

        async def submit_all() -> None:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                await asyncio.gather(*(loop.run_in_executor(pool, job) for _ in range(10)))

        nursery.start_soon(aio_call, submit_all)
        with trio.fail_after(PATIENCE):
            while running_now < 2:  # noqa: ASYNC110 - counted in worker threads
                await trio.sleep(0.001)
        # the bridge starts threads only in trio task steps: once every task is
        # blocked, whatever it was going to start has started
        await trio.testing.wait_all_tasks_blocked()
        assert trio.testing.active_thread_count() == 2
        release.set()
    assert most == 2


async def test_bridge_closes_failed_connects_and_leftover_connections(
    autojump_clock: MockClock,
) -> None:
    """A socket whose connect failed is closed at once; an open transport when the loop ends."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    closed = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        with trio.fail_after(PATIENCE):
            while await stream.receive_some():
                pass  # pragma: no cover
        closed.set()

    refused = socket.socket()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        async with open_bridged_loop() as loop:
            refused.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                await aio_call(loop.sock_connect, refused, ("127.0.0.1", 1))
            assert refused.fileno() == -1
            _reader, writer = await aio_call(asyncio.open_connection, "127.0.0.1", port)
        assert writer.transport.is_closing()
        with trio.fail_after(PATIENCE):
            await closed.wait()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------- updates


async def test_pushed_messages_reach_the_application_channel_in_order(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A burst of pushed messages arrives on the channel as PyrogramUpdate records, in order."""
    account = server.new_account()
    send, receive = trio.open_memory_channel[PyrogramUpdate](10)
    worker = PyrogramClientWorker(config(account), updates=send, registry=registry)
    async with running(worker):
        for n in range(30):
            server.push_message(account, f"hello {n}", sender=4242)
        with trio.fail_after(PATIENCE):
            got = [await receive.receive() for _ in range(30)]
    assert [u.update.text for u in got] == [f"hello {n}" for n in range(30)]
    assert {(u.account, u.kind) for u in got} == {("acct", "MessageHandler")}
    assert got[0].update.from_user.id == 4242


async def test_raw_update_handler_delivers_raw_updates_with_users_and_chats(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """With RawUpdateHandler the application gets raw updates and their users and chats."""
    account = server.new_account()
    send, receive = trio.open_memory_channel[PyrogramUpdate](10)
    worker = PyrogramClientWorker(
        config(account), updates=send, handlers=(RawUpdateHandler,), registry=registry
    )
    async with running(worker):
        server.push_message(account, "raw", sender=77)
        with trio.fail_after(PATIENCE):
            got = await receive.receive()
    assert got.kind == "RawUpdateHandler"
    assert isinstance(got.update, raw.types.UpdateNewMessage)
    users, _chats = got.extra
    assert 77 in users


async def test_silence_beyond_no_updates_timeout_ends_the_session(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """No update for no_updates_timeout seconds ends the incarnation with UpdatesStalled."""
    account = server.new_account()
    watch = Watch()
    made = config(account, no_updates_timeout=0.5)
    async with running(PyrogramClientWorker(made, registry=registry), watch):
        started = trio.current_time()
        exited = await watch.wait_for(events.ChildExited)
    assert same(exited.reason.exception, UpdatesStalled(after=0.5))
    assert isinstance(exited.reason.exception, workers.HeartbeatTimeout)
    assert exited.time - started == pytest.approx(0.5)


async def test_updates_keep_the_watchdog_quiet(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Updates arriving more often than no_updates_timeout keep the session up."""
    account = server.new_account()
    watch = Watch()
    made = config(account, no_updates_timeout=0.5)
    async with running(PyrogramClientWorker(made, registry=registry), watch):
        for _ in range(8):
            await trio.sleep(0.2)
            server.push_update(
                account,
                raw.types.UpdateUserStatus(user_id=7, status=raw.types.UserStatusOnline(expires=1)),
            )
    assert watch.of(events.ChildExited) == []


async def test_a_slow_application_is_not_mistaken_for_silence(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """Updates waiting for the application (a full channel) count as arriving."""
    account = server.new_account()
    watch = Watch()
    send, receive = trio.open_memory_channel[PyrogramUpdate](0)
    made = config(account, no_updates_timeout=0.3)
    worker = PyrogramClientWorker(made, updates=send, registry=registry)
    async with running(worker, watch):
        server.push_message(account, "unread for a while")
        await trio.sleep(1.0)
        with trio.fail_after(PATIENCE):
            assert (await receive.receive()).update.text == "unread for a while"
    assert watch.of(events.ChildExited) == []


# --------------------------------------------------------------- many accounts


def account_of(pool: supervisor.DynamicSupervisorHandle, child_id: str) -> Any:
    """The supervisor handle of one account of a pool."""
    (info,) = [c for c in pool.which_children() if c.id == child_id]
    return info.value


async def test_flood_wait_delays_only_that_accounts_restart(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """FLOOD_WAIT_2 restarts the account after exactly 2 s; the other accounts keep working."""
    accounts = {name: server.new_account() for name in ("ann", "bob", "cid")}
    watch = Watch()
    spec = account_pool(registry=registry, hooks=[watch])
    async with supervisor.open_supervisor(spec, hooks=[watch]) as pool:
        for name, account in accounts.items():
            await pool.start_child(config(account, name))
        flooded = accounts["ann"]
        server.fail_next(flooded, "help.GetNearestDc", RpcFailure.flood_wait(2))
        reply = await registry.call("ann", ("invoke", raw.functions.help.GetNearestDc()))
        assert isinstance(reply.error, errors.FloodWait)
        exited = await watch.wait_for(events.ChildExited, supervisor="accounts/ann")
        scheduled = watch.of(events.RestartScheduled, "accounts/ann")[0]
        with trio.move_on_after(1.5):
            while True:  # the others serve while ann waits
                for name in ("bob", "cid"):
                    assert (await get_me(registry, name)).id == accounts[name].user_id
                await trio.sleep(0.1)
        assert registry.whereis("ann") is None
        restarted = await watch.wait_for(events.ChildRestarted, supervisor="accounts/ann")
        assert (await get_me(registry, "ann")).id == flooded.user_id
    assert same(exited.reason.exception, workers.FloodWait(seconds=2))
    assert scheduled.delay == 2.0
    assert restarted.time - exited.time == pytest.approx(2.0)
    for name in ("bob", "cid"):
        assert accounts[name].calls["InitConnection"] == 1  # never reconnected
        assert watch.of(events.ChildExited, f"accounts/{name}") == []


async def test_pool_keeps_a_banned_account_down_and_visible(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A revoked account stays in the pool, its worker STOPPED with AuthRevoked."""
    banned, fine = server.new_account(), server.new_account()
    watch = Watch()
    async with supervisor.open_supervisor(
        account_pool(registry=registry, hooks=[watch]), hooks=[watch]
    ) as pool:
        banned_id = await pool.start_child(config(banned, "banned"))
        await pool.start_child(config(fine, "fine"))
        server.revoke(banned)
        await registry.call("banned", ("get_me",))
        await watch.wait_for(events.ChildExited, supervisor="accounts/banned")
        account = account_of(pool, banned_id)
        (client,) = account.snapshot().children
        assert client.state is ChildState.STOPPED
        assert client.last_exit is not None
        assert "AuthRevoked" in client.last_exit
        assert [c.state for c in pool.which_children()] == [ChildState.RUNNING] * 2
        assert (await get_me(registry, "fine")).id == fine.user_id


async def test_pool_refuses_what_is_not_a_config(
    autojump_clock: MockClock, registry: workers.Registry
) -> None:
    """start_child with anything but a PyrogramConfig fails to start, with a TypeError."""
    async with supervisor.open_supervisor(account_pool(registry=registry), hooks=[]) as pool:
        with pytest.raises(supervisor.FailedToStartChild) as caught:
            await pool.start_child("not a config")
    assert isinstance(caught.value.error, TypeError)


async def test_twenty_accounts_with_faults_in_some(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """20 accounts, faults in 6 (flood, ban, dead link): the other 14 never notice."""
    accounts = [server.new_account() for _ in range(20)]
    names = [f"a{n:02}" for n in range(20)]
    watch = Watch()
    quick = specs.Backoff(wait_initial=0.2, wait_max=0.5, wait_jitter=0)
    spec = account_pool(registry=registry, hooks=[watch], backoff=quick)
    flooded, banned, silenced = names[0:2], names[5:7], names[10:12]
    faulty = {*flooded, *banned, *silenced}
    by_name = dict(zip(names, accounts, strict=True))
    async with supervisor.open_supervisor(spec, hooks=[watch]) as pool:
        for name, account in by_name.items():
            await pool.start_child(config(account, name, connect_timeout=1.0))
        for name in flooded:
            server.fail_next(by_name[name], "help.GetNearestDc", RpcFailure.flood_wait(1))
            await registry.call(name, ("invoke", raw.functions.help.GetNearestDc()))
        for name in banned:
            server.revoke(by_name[name])
            await registry.call(name, ("get_me",))
        for name in silenced:
            server.blackhole(by_name[name])
        for name in faulty:
            await watch.wait_for(events.ChildExited, supervisor=f"accounts/{name}")
        for name in names:
            if name not in faulty:
                assert (await get_me(registry, name)).id == by_name[name].user_id
        for name in flooded:
            await watch.wait_for(events.ChildRestarted, supervisor=f"accounts/{name}")
        for name in silenced:
            server.blackhole(by_name[name], on=False)
            await watch.wait_for(events.ChildRestarted, supervisor=f"accounts/{name}")
        for name in (*flooded, *silenced):
            assert (await get_me(registry, name)).id == by_name[name].user_id
        assert pool.count_children().active == 20  # every account's supervisor is up
        assert sorted(registry.names()) == sorted(set(names) - set(banned))
    for name in names:
        exits = [type(e.reason.exception) for e in watch.of(events.ChildExited, f"accounts/{name}")]
        if name in flooded:
            assert exits == [workers.FloodWait]
        elif name in banned:
            assert exits == [workers.AuthRevoked]
        elif name in silenced:
            assert exits[0] is workers.HeartbeatTimeout
        else:
            assert exits == []
            assert by_name[name].calls["InitConnection"] == 1
    assert watch.of(events.GaveUp) == []


# --------------------------------------------------------------- proxies


def socks5(proxy: ConnectProxy, **extra: Any) -> dict[str, Any]:
    """The loopback proxy as Pyrogram's SOCKS5 proxy mapping."""
    return {"scheme": "socks5", "hostname": "127.0.0.1", "port": proxy.port, **extra}


def exits(watch: Watch) -> list[BaseException | None]:
    """Why the worker's incarnations ended, in order."""
    return [e.reason.exception for e in watch.of(events.ChildExited)]


def test_config_takes_a_proxy_list_and_one_proxy_as_a_list_of_one() -> None:
    """proxies= is a list of mappings (frozen, passwords hidden); proxy= is a list of one."""
    one = {"scheme": "socks5", "hostname": "h", "port": 1}
    several = PyrogramConfig(
        name="a",
        api_id=1,
        api_hash="h",
        session_string="s",
        proxies=[one, {**one, "port": 2, "password": "pr0xy-s3cret"}],
    )
    assert [p["port"] for p in several.proxy_list] == [1, 2]
    assert "pr0xy-s3cret" not in repr(several)
    assert hash(several)
    single = attrs.evolve(several, proxies=(), proxy=one)
    assert single.proxy_list == (one,)
    assert attrs.evolve(several, proxies=()).proxy_list == ()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"proxies": {"scheme": "socks5", "hostname": "h", "port": 1}}, "proxies"),
        ({"proxies": "socks5://h:1"}, "proxies"),
        ({"proxies": [{"scheme": "socks5", "hostname": "h", "port": 0}]}, "proxies[0]"),
        (
            {
                "proxy": {"scheme": "socks5", "hostname": "h", "port": 1},
                "proxies": [{"scheme": "http", "hostname": "h", "port": 2}],
            },
            "proxies",
        ),
        ({"proxy_timeout": 0}, "proxy_timeout"),
    ],
)
def test_config_rejects_a_bad_proxy_list_by_name(overrides: dict[str, Any], field: str) -> None:
    """A proxy list that is not one, a bad entry, or proxy and proxies both: named."""
    with pytest.raises(PyrogramConfigError) as caught:
        PyrogramConfig(name="a", api_id=1, api_hash="h", session_string="s", **overrides)
    assert caught.value.field == field


async def test_connects_through_one_socks5_proxy(
    autojump_clock: MockClock,
    server: MTProtoServer,
    connect_proxy: ConnectProxy,
    registry: workers.Registry,
) -> None:
    """The single-proxy form: the session runs through the SOCKS5 tunnel."""
    account = server.new_account()
    worker = PyrogramClientWorker(config(account, proxy=socks5(connect_proxy)), registry=registry)
    async with running(worker):
        assert (await get_me(registry, "acct")).id == account.user_id
    assert connect_proxy.targets == {("127.0.0.1", server.port): 1}


async def test_proxy_list_rotates_past_dead_and_refusing_proxies(
    autojump_clock: MockClock,
    server: MTProtoServer,
    loopback_servers: LoopbackServers,
    registry: workers.Registry,
) -> None:
    """A dead, then a refusing proxy are ProxyFailed in turn (first start too); the third works."""
    account = server.new_account()
    watch = Watch()
    dead, refusing, good = [await loopback_servers.enter(open_connect_proxy()) for _ in range(3)]
    await dead.kill()
    refusing.refuse_status = 502
    made = config(account, proxies=[socks5(p) for p in (dead, refusing, good)])
    worker = PyrogramClientWorker(made, registry=registry)
    async with running(worker, watch, backoff=QUICK):
        await watch.wait_for(events.ChildRestarted, 2)
        assert (await get_me(registry, "acct")).id == account.user_id
        assert worker.proxy == socks5(good)
    assert good.targets == {("127.0.0.1", server.port): 1}
    failures = exits(watch)
    assert [type(f) for f in failures] == [workers.ProxyFailed] * 2
    assert [f.proxy for f in failures if isinstance(f, workers.ProxyFailed)] == [
        f"socks5://127.0.0.1:{p.port}" for p in (dead, refusing)
    ]
    assert "cannot connect to the proxy" in str(failures[0])
    assert "refused the tunnel" in str(failures[1])
    assert watch.of(events.StartFailed) == []


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_tunnel_check_tells_a_working_proxy_from_a_failing_one(
    autojump_clock: MockClock, server: MTProtoServer, connect_proxy: ConnectProxy, scheme: str
) -> None:
    """The check opens a tunnel to the server, and names a refusal or a stalled handshake."""
    target = ("127.0.0.1", server.port)
    proxy = connect_proxy
    mapping = {"scheme": scheme, "hostname": "127.0.0.1", "port": proxy.port}
    assert await tunnel_failure(mapping, target, timeout=1.0) is None
    assert proxy.tunnels_opened == 1
    proxy.refuse_status = 502
    refused = await tunnel_failure(mapping, target, timeout=1.0)
    assert refused is not None
    assert "refused the tunnel" in refused
    proxy.refuse_status, proxy.stall_handshake = None, True
    started = trio.current_time()
    stalled = await tunnel_failure(mapping, target, timeout=1.0)
    assert stalled == f"the proxy 127.0.0.1:{proxy.port} did not answer within 1.0s"
    assert trio.current_time() - started == 1.0


async def test_a_proxy_dying_mid_session_rotates_to_the_next(
    autojump_clock: MockClock,
    server: MTProtoServer,
    loopback_servers: LoopbackServers,
    registry: workers.Registry,
) -> None:
    """Killing the proxy under a running session ends it with ProxyFailed; the next one is used."""
    account = server.new_account()
    watch = Watch()
    first, second = [await loopback_servers.enter(open_connect_proxy()) for _ in range(2)]
    made = config(account, proxies=[socks5(first), socks5(second)])
    worker = PyrogramClientWorker(made, registry=registry)
    async with running(worker, watch, backoff=QUICK):
        await get_me(registry, "acct")
        await first.kill()
        await watch.wait_for(events.ChildRestarted)
        assert (await get_me(registry, "acct")).id == account.user_id
    assert second.tunnels_opened >= 1
    [failure] = exits(watch)
    assert isinstance(failure, workers.ProxyFailed)
    assert isinstance(failure.__cause__, workers.ConnectionLost | workers.HeartbeatTimeout)


async def test_a_silent_server_behind_a_working_proxy_is_not_the_proxy(
    autojump_clock: MockClock,
    server: MTProtoServer,
    connect_proxy: ConnectProxy,
    registry: workers.Registry,
) -> None:
    """A black-holed data centre behind a proxy that tunnels is no ProxyFailed."""
    account = server.new_account()
    watch = Watch()
    made = config(account, proxies=[socks5(connect_proxy), socks5(connect_proxy)])
    worker = PyrogramClientWorker(made, registry=registry)
    async with running(worker, watch):
        await get_me(registry, "acct")
        server.blackhole(account)
        exited = await watch.wait_for(events.ChildExited)
    assert type(exited.reason.exception) is workers.HeartbeatTimeout
    assert connect_proxy.tunnels_opened >= 2  # the session's and the check's


# --------------------------------------------------------------- re-login


async def test_relogin_hook_restarts_the_account_with_the_new_session(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """On AuthRevoked the hook's new session string is used by the next incarnation."""
    account, renewed = server.new_account(), server.new_account(first_name="Again")
    watch = Watch()
    asked: list[tuple[str, str]] = []

    async def relogin(old: PyrogramConfig, failure: workers.AuthRevoked) -> str:
        asked.append((old.name, failure.cause))
        return renewed.session_string

    worker = PyrogramClientWorker(config(account), registry=registry, relogin=relogin)
    async with running(worker, watch, backoff=QUICK):
        server.revoke(account)
        await registry.call("acct", ("get_me",))
        await watch.wait_for(events.ChildRestarted)
        assert (await get_me(registry, "acct")).id == renewed.user_id
    assert asked == [("acct", "AUTH_KEY_UNREGISTERED")]
    assert worker.config.session_string == renewed.session_string
    [failure] = exits(watch)
    assert isinstance(failure, SessionRenewed)


async def test_failed_relogin_leaves_the_account_down_and_visible(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A hook that raises leaves AuthRevoked (saying why): a TRANSIENT account stays down."""
    account = server.new_account()
    watch = Watch()

    async def relogin(old: PyrogramConfig, failure: workers.AuthRevoked) -> str:
        raise RuntimeError("no login code arrived")

    worker = PyrogramClientWorker(config(account), registry=registry, relogin=relogin)
    async with running(worker, watch, backoff=None) as sup:
        server.revoke(account)
        await registry.call("acct", ("get_me",))
        exited = await watch.wait_for(events.ChildExited)
        await trio.sleep(1)
        (child,) = sup.snapshot().children
        assert (child.state, child.incarnation) == (ChildState.STOPPED, 1)
    failure = exited.reason.exception
    assert isinstance(failure, workers.AuthRevoked)
    assert "re-login failed: RuntimeError('no login code arrived')" in failure.cause
    assert isinstance(failure.__cause__, RuntimeError)


async def test_relogin_on_the_first_start_brings_the_account_up(
    autojump_clock: MockClock, server: MTProtoServer, registry: workers.Registry
) -> None:
    """A session revoked before the first start is renewed: the tree comes up."""
    account, renewed = server.new_account(), server.new_account(first_name="Again")
    server.revoke(account)

    async def relogin(old: PyrogramConfig, failure: workers.AuthRevoked) -> PyrogramConfig:
        return attrs.evolve(old, session_string=renewed.session_string)

    worker = PyrogramClientWorker(config(account), registry=registry, relogin=relogin)
    watch = Watch()
    async with running(worker, watch, backoff=QUICK):
        await watch.wait_for(events.ChildRestarted)
        assert (await get_me(registry, "acct")).id == renewed.user_id
    assert watch.of(events.StartFailed) == []
