"""Tests for the loopback MTProto server, driven by a real Pyrogram client on trio-asyncio."""

from __future__ import annotations

import asyncio
import gc
import struct
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyrogram
import pytest
import trio
import trio_asyncio  # type: ignore[import-untyped, unused-ignore]
from pyrogram import errors
from pyrogram.client import Client
from pyrogram.handlers.message_handler import MessageHandler
from pyrogram.handlers.raw_update_handler import RawUpdateHandler
from pyrogram.session.internals.data_center import DataCenter
from pyrogram.storage.memory_storage import MemoryStorage
from trio.testing import MockClock

from workers._aio_bridge import (
    aio_call,
    install_executor_bridge,
    open_bridged_loop,
    pending_tasks,
)
from workers.testing import (
    AUTH_KEY_DUPLICATED,
    AUTH_KEY_UNREGISTERED,
    RPC_CALL_FAIL,
    Account,
    FaultAction,
    MTProtoServer,
    RpcFailure,
    redirect_pyrogram,
)
from workers.testing._mtproto_codec import method_name

raw: Any = pyrogram.raw

API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"


#: Pyrogram writes unknown_errors.txt to the current directory: each test has its own.
pytestmark = pytest.mark.usefixtures("in_tmp_cwd")


@pytest.fixture
def server(mtproto_server: MTProtoServer) -> MTProtoServer:
    """A loopback server that every Pyrogram data centre points at (the plugin's)."""
    return mtproto_server


@asynccontextmanager
async def pyrogram_client(
    account: Account | None,
    *,
    start: bool = False,
    add_handlers: tuple[Any, ...] = (),
    check_tasks: bool = True,
    **kwargs: Any,
) -> AsyncIterator[Client]:
    """Run a connected Pyrogram client on its own trio-asyncio loop.

    On exit the client is disconnected and, with ``check_tasks``, the loop must have no
    asyncio task left before it closes.
    """
    async with open_bridged_loop() as loop:
        if account is not None:
            kwargs["session_string"] = account.session_string
        client = Client(
            "loopback",
            api_id=API_ID,
            api_hash=API_HASH,
            in_memory=True,
            no_updates=False,
            sleep_threshold=0,
            workdir=str(Path.cwd()),
            **kwargs,
        )
        for handler in add_handlers:
            client.add_handler(*handler)
        with trio.fail_after(10):
            await aio_call(client.start if start else client.connect)
        try:
            yield client
        finally:
            with trio.fail_after(10):
                await aio_call(client.stop if start else client.disconnect)
            if check_tasks:
                assert pending_tasks(loop) == set()


async def test_get_me_returns_the_account_user(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A real client connects through the loopback server and get_me() returns the account."""
    account = server.new_account(first_name="Ada", last_name="Lovelace", username="ada")
    async with pyrogram_client(account) as client:
        me = await aio_call(client.get_me)
    assert (me.id, me.first_name, me.last_name, me.username) == (
        account.user_id,
        "Ada",
        "Lovelace",
        "ada",
    )
    assert not me.is_bot
    assert server.call_count("InitConnection") == 1
    assert server.call_count(raw.functions.users.GetFullUser, account) == 1
    assert server.call_count("users.getFullUser") == 1
    assert server.connections_accepted == 1


async def test_start_runs_getstate_get_me_and_initialize(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """client.start() with a session string is non-interactive and sets client.me."""
    account = server.new_account(first_name="Grace")
    async with pyrogram_client(account, start=True) as client:
        assert client.me is not None
        assert client.me.id == account.user_id
    assert server.call_count("updates.GetState") == 1


async def test_flood_wait_surfaces_with_its_seconds(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """An injected FLOOD_WAIT_30 is raised as pyrogram's FloodWait with value 30."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        fault = server.fail_next(account, "users.GetFullUser", RpcFailure.flood_wait(30))
        with pytest.raises(errors.FloodWait) as caught:
            await aio_call(client.get_me)
        assert caught.value.value == 30
        assert (fault.hits, fault.remaining) == (1, 0)
        me = await aio_call(client.get_me)
    assert me.id == account.user_id


async def test_auth_key_unregistered_is_the_401_family(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """AUTH_KEY_UNREGISTERED is raised as AuthKeyUnregistered, an Unauthorized (401)."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        server.fail_next(account, None, AUTH_KEY_UNREGISTERED)
        with pytest.raises(errors.AuthKeyUnregistered) as caught:
            await aio_call(client.get_me)
    assert isinstance(caught.value, errors.Unauthorized)
    assert caught.value.CODE == 401


async def test_auth_key_duplicated_is_406(autojump_clock: MockClock, server: MTProtoServer) -> None:
    """AUTH_KEY_DUPLICATED is raised as AuthKeyDuplicated, a NotAcceptable (406)."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        server.fail_next(None, raw.functions.users.GetFullUser, AUTH_KEY_DUPLICATED)
        with pytest.raises(errors.AuthKeyDuplicated) as caught:
            await aio_call(client.get_me)
    assert isinstance(caught.value, errors.NotAcceptable)


async def test_internal_server_error_is_raised_after_retries(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A 500 fails every retry of a call with retries=1 and is raised as RpcCallFail."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        fault = server.fail_always(account, "help.GetNearestDc", RPC_CALL_FAIL)
        with pytest.raises(errors.InternalServerError):
            await aio_call(client.invoke, raw.functions.help.GetNearestDc(), retries=1)
        assert fault.hits == 2
        fault.cancel()
        nearest = await aio_call(client.invoke, raw.functions.help.GetNearestDc(), retries=0)
    assert nearest.this_dc == server.dc_id


async def test_faults_are_per_account(autojump_clock: MockClock, server: MTProtoServer) -> None:
    """A fault injected for one account does not touch another account's calls."""
    victim, bystander = server.new_account(), server.new_account()
    server.fail_always(victim, "users.GetFullUser", RpcFailure.flood_wait(5))
    async with pyrogram_client(bystander) as client:
        assert (await aio_call(client.get_me)).id == bystander.user_id
    async with pyrogram_client(victim) as client:
        with pytest.raises(errors.FloodWait):
            await aio_call(client.get_me)


async def test_pushed_message_reaches_message_and_raw_handlers(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """Pushed updates reach a MessageHandler and a RawUpdateHandler, in both update forms."""
    account = server.new_account()
    send, receive = trio.open_memory_channel[tuple[str, Any]](10)

    async def on_message(client: Client, message: Any) -> None:
        send.send_nowait(("message", (message.text, message.from_user.id)))

    async def on_raw(client: Client, update: Any, users: Any, chats: Any) -> None:
        send.send_nowait(("raw", type(update).__name__))

    pairs = ((MessageHandler(on_message), 0), (RawUpdateHandler(on_raw), 1))
    async with pyrogram_client(account, start=True, add_handlers=pairs):
        for short in (False, True):
            server.push_message(account, f"hi {short}", sender=4242, short=short)
            with trio.fail_after(2):
                got = {await receive.receive(), await receive.receive()}
            assert got == {("message", (f"hi {short}", 4242)), ("raw", "UpdateNewMessage")}
    assert server.call_count("updates.GetDifference") == 1  # only the short form needs it
    assert server.updates_pushed == 2


async def test_push_update_wraps_a_bare_update(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A bare Update constructor is delivered wrapped in UpdateShort."""
    account = server.new_account()
    send, receive = trio.open_memory_channel[Any](1)

    async def on_raw(client: Client, update: Any, users: Any, chats: Any) -> None:
        send.send_nowait(update)

    pairs = ((RawUpdateHandler(on_raw), 0),)
    async with pyrogram_client(account, start=True, add_handlers=pairs):
        status = raw.types.UpdateUserStatus(user_id=7, status=raw.types.UserStatusOnline(expires=1))
        assert server.push_update(account, status) == 1
        with trio.fail_after(2):
            update = await receive.receive()
    assert update == status
    with pytest.raises(TypeError):
        server.push_update(account, raw.types.PeerUser(user_id=1))


async def test_blackholed_ping_times_out_within_its_timeout(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """invoke(Ping, retries=0, timeout=1) on a black-holed connection times out after 1 s."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        server.blackhole(account)
        pings = server.call_count("Ping")
        started = trio.current_time()
        with trio.fail_after(3), pytest.raises(TimeoutError):
            await aio_call(client.invoke, raw.functions.Ping(ping_id=1), retries=0, timeout=1)
        assert trio.current_time() - started == pytest.approx(1.0)
        assert server.call_count("Ping") == pings  # discarded unread, not answered
        assert server.live_connections(account) == 1  # the TCP connection stays up
        server.blackhole(account, on=False)
        pong = await aio_call(client.invoke, raw.functions.Ping(ping_id=2), retries=0, timeout=1)
    assert pong.ping_id == 2


async def test_global_blackhole_and_no_reply(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A global black hole silences every account; NO_REPLY swallows one call."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        server.fail_next(None, "help.GetNearestDc", FaultAction.NO_REPLY)
        with trio.fail_after(3), pytest.raises(TimeoutError):
            await aio_call(client.invoke, raw.functions.help.GetNearestDc(), retries=0, timeout=0.3)
        server.blackhole()
        with trio.fail_after(3), pytest.raises(TimeoutError):
            await aio_call(client.invoke, raw.functions.Ping(ping_id=1), retries=0, timeout=0.3)
        server.blackhole(on=False)
        await aio_call(client.invoke, raw.functions.Ping(ping_id=1), retries=0, timeout=1)


async def test_dropped_connection_is_reestablished(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """drop() closes the TCP connection; Pyrogram reconnects and re-initialises at once."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        assert server.drop(account) == 1
        with trio.fail_after(3):
            await server.wait_for_calls("InitConnection", 2)
            await server.wait_for_connection(account)
        assert server.connections_accepted == 2
        assert (await aio_call(client.get_me)).id == account.user_id


async def test_logs_when_each_connection_came_and_each_account_came_back(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """After drop(), accepted_at logs the reconnect and connected_at when its account is back."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        first = server.connected_at[account.user_id]
        await trio.sleep(1)
        dropped_at = trio.current_time()
        assert server.drop() == 1
        with trio.fail_after(3):
            await server.wait_until(lambda: server.connected_at[account.user_id] >= dropped_at)
            await aio_call(client.get_me)  # the reconnect is complete
    assert len(server.accepted_at) == server.connections_accepted == 2
    assert server.accepted_at[0] <= first < dropped_at <= server.accepted_at[1]
    assert server.accepted_at[1] <= server.connected_at[account.user_id]


async def test_drop_connection_fault_fails_the_pending_call(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """DROP_CONNECTION closes the connection instead of answering; the call times out."""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        server.fail_next(account, "users.GetFullUser", FaultAction.DROP_CONNECTION)
        query = raw.functions.users.GetFullUser(id=raw.types.InputUserSelf())
        with trio.fail_after(3), pytest.raises(TimeoutError):
            await aio_call(client.invoke, query, retries=0, timeout=0.5)
        with trio.fail_after(3):
            await server.wait_for_calls("InitConnection", 2)
        assert (await aio_call(client.get_me)).id == account.user_id


async def test_restart_on_the_same_port(autojump_clock: MockClock, server: MTProtoServer) -> None:
    """stop_listening() refuses connections; start_listening() serves the same port again."""
    account = server.new_account()
    port = server.port
    async with pyrogram_client(account) as client:
        await server.stop_listening()
        assert not server.listening
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", port)
        await server.start_listening()
        assert (server.listening, server.port) == (True, port)
        with trio.fail_after(5):
            await server.wait_for_calls("InitConnection", 2)
        assert (await aio_call(client.get_me)).id == account.user_id


async def test_revoked_session_connects_but_is_unauthorised(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A revoked session still connects (as on Telegram) but get_me() raises 401."""
    account = server.new_account()
    server.revoke(account)
    async with pyrogram_client(account) as client:
        with pytest.raises(errors.AuthKeyUnregistered):
            await aio_call(client.get_me)
        server.revoke(account, revoked=False)
        assert (await aio_call(client.get_me)).id == account.user_id


async def test_forgotten_key_gets_transport_error_404(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A key the server does not know is refused with transport error -404 and a close."""
    account = server.new_account()
    server.forget(account)
    async with open_bridged_loop():
        client = Client(
            "x", session_string=account.session_string, in_memory=True, workdir=str(Path.cwd())
        )
        with trio.move_on_after(0.5) as scope:
            await aio_call(client.connect)
    assert scope.cancelled_caught  # Pyrogram retries forever; leaving the loop ends it
    # Cancelled mid-connect, Pyrogram never closes its socket: collect it quietly here.
    del client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert server.connections_accepted >= 1
    assert server.calls["Ping"] == 0


async def test_unknown_method_is_an_rpc_error_and_responders_override(
    autojump_clock: MockClock,
    server: MTProtoServer,
) -> None:
    """A call without a responder gets 400 METHOD_INVALID; set_responder answers it."""
    account = server.new_account()
    query = raw.functions.help.GetAppConfig(hash=0)
    async with pyrogram_client(account) as client:
        with pytest.raises(errors.MethodInvalid):
            await aio_call(client.invoke, query)
        assert server.unhandled == {"help.GetAppConfig": 1}
        seen: list[Account] = []

        def respond(who: Account, q: Any) -> Any:
            seen.append(who)
            return raw.types.help.AppConfigNotModified()

        server.set_responder(raw.functions.help.GetAppConfig, respond)
        answer = await aio_call(client.invoke, query)
        assert isinstance(answer, raw.types.help.AppConfigNotModified)
        server.set_responder("help.getAppConfig", lambda who, q: RpcFailure(400, "PEER_ID_INVALID"))
        with pytest.raises(errors.PeerIdInvalid):
            await aio_call(client.invoke, query)
        server.set_responder("help.GetAppConfig", None)
        with pytest.raises(errors.MethodInvalid):
            await aio_call(client.invoke, query)
    assert seen == [account]


async def test_fresh_client_performs_the_key_exchange(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """A client without a session creates an auth key with the server; it is not logged in."""
    async with pyrogram_client(None) as client:
        assert await aio_call(client.storage.user_id) is None
        with pytest.raises(errors.AuthKeyUnregistered):
            await aio_call(client.get_me)
    assert [server.calls[n] for n in ("ReqPqMulti", "ReqDHParams", "SetClientDHParams")] == [1] * 3


async def test_bot_token_login_binds_the_new_key(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """Client(bot_token=...) exchanges a key, logs in with auth.ImportBotAuthorization."""
    bot = server.new_account(first_name="Botty", username="botty_bot", is_bot=True)
    assert bot.bot_token is not None
    async with pyrogram_client(None, start=True, bot_token=bot.bot_token) as client:
        assert client.me is not None
        assert (client.me.id, client.me.is_bot) == (bot.user_id, True)
        exported = await aio_call(client.export_session_string)
    assert exported != bot.session_string  # a second authorisation of the same account
    assert server.call_count("auth.ImportBotAuthorization") == 1
    assert server.call_count("users.GetFullUser", bot) == 1  # start() ran get_me() as the bot


async def test_session_string_matches_pyrogram_storage(
    autojump_clock: MockClock, server: MTProtoServer
) -> None:
    """Pyrogram's MemoryStorage decodes the session string and re-exports it unchanged."""
    account = server.new_account(is_bot=True, api_id=777)
    storage = MemoryStorage("s", account.session_string)
    async with open_bridged_loop():
        await aio_call(storage.open)
        values = [
            await aio_call(getattr(storage, name))
            for name in ("dc_id", "api_id", "test_mode", "auth_key", "user_id", "is_bot")
        ]
        exported = await aio_call(storage.export_session_string)
        await aio_call(storage.close)
    assert values == [server.dc_id, 777, False, account.auth_key, account.user_id, True]
    assert exported == account.session_string


def test_redirect_nests_and_restores_datacenter() -> None:
    """redirect_pyrogram points chosen data centres at loopback and restores the table."""
    original = DataCenter(2, False, False, False)
    with redirect_pyrogram(1111):
        assert DataCenter(4, True, False, True) == ("127.0.0.1", 1111)
        with redirect_pyrogram(2222, dc_ids=[2]):
            assert DataCenter(2, False, False, False) == ("127.0.0.1", 2222)
            assert DataCenter(1, False, False, False) == ("127.0.0.1", 1111)
    assert DataCenter(2, False, False, False) == original
    assert "__new__" in vars(DataCenter)


def test_method_names() -> None:
    """Methods are named as Pyrogram names them, from a class or as given."""
    assert method_name(raw.functions.users.GetFullUser) == "users.GetFullUser"
    assert method_name(raw.functions.Ping) == "Ping"
    assert method_name("anything") == "anything"
    with pytest.raises(TypeError):
        method_name(raw.types.User)


async def test_garbage_connection_is_closed_and_server_keeps_serving(
    autojump_clock: MockClock,
    server: MTProtoServer,
) -> None:
    """A peer that breaks the protocol is disconnected; other clients are unaffected."""
    unknown_constructor = b"\x00" * 8 + struct.pack("<qiI", 1, 4, 0xDEADBEEF)
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\xef\x06" + unknown_constructor):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(garbage)
            with trio.fail_after(2):
                assert await stream.receive_some() == b""
    account = server.new_account()
    async with pyrogram_client(account) as client:
        assert (await aio_call(client.get_me)).id == account.user_id


async def test_intermediate_transport_gets_transport_error_for_unknown_key(
    autojump_clock: MockClock,
    server: MTProtoServer,
) -> None:
    """The intermediate framing is understood: an unknown key id gets -404 back."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        packet = b"\x42" * 8 + b"\x00" * 40
        await stream.send_all(b"\xee" * 4 + struct.pack("<I", len(packet)) + packet)
        received = b""
        with trio.fail_after(2):
            while chunk := await stream.receive_some():
                received += chunk
    assert received == struct.pack("<Ii", 4, -404)


async def test_executor_bridge_accepts_foreign_executors(autojump_clock: MockClock) -> None:
    """The bridged loop runs jobs given to plain ThreadPoolExecutors in trio threads."""
    import concurrent.futures
    import threading

    async with trio_asyncio.open_loop() as loop:
        install_executor_bridge(loop)
        install_executor_bridge(loop)  # idempotent

        async def job() -> str:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: threading.current_thread().name
                )

        name = await aio_call(job)
    assert name != threading.current_thread().name
    plain = asyncio.SelectorEventLoop()
    try:
        with pytest.raises(TypeError):
            install_executor_bridge(plain)
    finally:
        plain.close()


def _stubborn(swallow: int) -> Any:
    """An asyncio coroutine function that swallows its first ``swallow`` cancellations."""

    async def run() -> None:
        swallowed = 0
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == swallow:
                    raise
                swallowed += 1

    return run


async def test_aio_call_cancels_until_the_task_ends(autojump_clock: MockClock) -> None:
    """A trio deadline around aio_call holds even if the asyncio task swallows a cancel."""
    async with open_bridged_loop() as loop:
        started = trio.current_time()
        with trio.move_on_after(0.05) as scope:
            await aio_call(_stubborn(swallow=3))
        assert scope.cancelled_caught
        assert trio.current_time() - started < 1
        assert pending_tasks(loop) == set()
    with pytest.raises(RuntimeError, match="open_loop"):
        await aio_call(_stubborn(swallow=0))


async def test_leaving_the_bridged_loop_ends_stubborn_tasks(autojump_clock: MockClock) -> None:
    """Leaving open_bridged_loop() re-cancels asyncio tasks that swallow a cancellation."""
    with trio.fail_after(3):
        async with open_bridged_loop() as loop:
            task = loop.create_task(_stubborn(swallow=2)())
            await trio.sleep(0.01)
    assert task.cancelled()


async def test_counts_concurrent_sessions_per_auth_key(server: MTProtoServer) -> None:
    """Two live clients on one auth key make a peak of 2; one after the other stays at 1."""
    one, other = server.new_account(), server.new_account()
    async with pyrogram_client(one):
        pass
    async with pyrogram_client(one):
        assert server.max_concurrent_sessions(one) == 1
    async with pyrogram_client(other), pyrogram_client(other):
        assert server.max_concurrent_sessions(other) == 2
    assert server.max_concurrent_sessions(one) == 1
    assert server.max_concurrent_sessions() == 2


async def test_live_sessions_counts_open_connections_per_account(server: MTProtoServer) -> None:
    """live_sessions() has each account with its open identified connections, none closed."""
    one, other = server.new_account(), server.new_account()
    async with pyrogram_client(one), pyrogram_client(other), pyrogram_client(other):
        assert server.live_sessions() == {one.user_id: 1, other.user_id: 2}
    with trio.fail_after(10):  # a hang guard: the server sees the closes on its own time
        await server.wait_until(lambda: not server.live_sessions())
