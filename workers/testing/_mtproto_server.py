"""A loopback MTProto server on trio that a real Pyrogram client connects to (test-only).

The server speaks enough of MTProto 2.0 for Pyrogram 2.0.x to connect, call
``get_me()``, receive pushed updates and see the failures a worker must survive.
This module holds the server itself: its connections, the dispatch of each message
and the controls a test uses. The rest of the MTProto loopback lives beside it:

- ``_mtproto_codec``: framing (TCP abridged, intermediate), encryption with
  Pyrogram's own ``pyrogram.crypto``, message ids, the one wall-clock read;
- ``_mtproto_handshake``: the auth-key exchange of a fresh client (no session);
- ``_mtproto_accounts``: :class:`Account` (a pre-shared auth key per user, handed to
  the client through :attr:`Account.session_string`) and session strings;
- ``_mtproto_faults``: RPC errors and injected faults;
- ``_mtproto_answers``: the built-in answers to ``help.GetConfig``,
  ``help.GetNearestDc``, ``updates.GetState``, ``updates.GetDifference``,
  ``users.GetUsers``, ``users.GetFullUser``, ``account.UpdateStatus``, ``auth.LogOut``;
- ``_pyrogram_patch``: :func:`redirect_pyrogram`, which points Pyrogram's data centres
  at the server (:func:`open_mtproto_server` does so for its lifetime by default).

Besides those answers, the server answers ``Ping``/``PingDelayDisconnect`` (``Pong``),
``MsgsAck``, message containers, the ``InvokeWithLayer``/``InitConnection``/
``InvokeWithoutUpdates``/... wrappers, and ``auth.ImportBotAuthorization``: a key made by
a key exchange is not logged in (``connect()`` returns ``False``, authorised calls get
401) until a bot logs in with ``Client(bot_token=account.bot_token)``; user logins
(``auth.SendCode``/``auth.SignIn``) are not implemented. Everything else gets an
``rpc_error`` (400 ``METHOD_INVALID``) unless a responder is registered with
:meth:`MTProtoServer.set_responder`. Faults, per account or global: RPC errors on
chosen methods or on the next call, swallowed calls, dropped connections, black-holed
connections (TCP up, nothing answered, not even pings), revoked sessions, and
stopping/restarting the listener on the same port.

Not modelled: server salts (``bad_server_salt``), ``new_session_created``, acks from the
server, ``PingDelayDisconnect``'s disconnect timer, gzip, the full and obfuscated
transports, and real update sequencing beyond a per-account ``pts``.

Example (``open_bridged_loop`` is in ``workers._aio_bridge``)::

    async with open_mtproto_server() as server:
        account = server.new_account(first_name="Ada")
        async with open_bridged_loop():
            client = pyrogram.Client(
                "t", session_string=account.session_string, in_memory=True,
                no_updates=False, sleep_threshold=0, workdir=tmp_dir,
            )
            await trio_asyncio.aio_as_trio(client.connect)()
            me = await trio_asyncio.aio_as_trio(client.get_me)()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from io import BytesIO
from typing import Any, Final

import attrs
import pyrogram.raw
import trio
from pyrogram.raw.core.tl_object import TLObject

from . import _mtproto_handshake as handshake
from ._listener import RestartableListener
from ._mtproto_accounts import Account, generate_auth_key, new_user_id
from ._mtproto_answers import BuiltinAnswers, Responder
from ._mtproto_codec import (
    CONTAINER_ID,
    TRANSPORT_AUTH_KEY_NOT_FOUND,
    EndOfStream,
    Framing,
    MethodSpec,
    MsgIds,
    ProtocolError,
    Reader,
    decrypt,
    encrypt,
    key_id_of,
    method_key,
    short_name,
    split_messages,
    unix_now,
)
from ._mtproto_faults import (
    AUTH_KEY_UNREGISTERED,
    INPUT_CONSTRUCTOR_INVALID,
    METHOD_INVALID,
    Fault,
    FaultAction,
    RpcFailure,
    take_fault,
)
from ._pyrogram_patch import redirect_pyrogram

# ``pyrogram.raw`` is generated code whose modules do not re-export their names, so under
# ``mypy --strict`` (no implicit re-export) every ``raw.types.X`` would be an error: use
# it untyped.
raw: Any = pyrogram.raw

__all__ = ["MTProtoServer", "open_mtproto_server"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- connections


_WRAPPERS: Final = (
    raw.functions.InvokeWithLayer,
    raw.functions.InitConnection,
    raw.functions.InvokeWithoutUpdates,
    raw.functions.InvokeWithTakeout,
    raw.functions.InvokeAfterMsg,
    raw.functions.InvokeAfterMsgs,
    raw.functions.InvokeWithMessagesRange,
)
_UPDATES_FAMILY: Final = (
    raw.types.Updates,
    raw.types.UpdatesCombined,
    raw.types.UpdateShort,
    raw.types.UpdateShortMessage,
    raw.types.UpdateShortChatMessage,
    raw.types.UpdateShortSentMessage,
    raw.types.UpdatesTooLong,
)
# Calls a revoked session may still make (Telegram answers them unauthorised too).
_WITHOUT_AUTHORISATION: Final = frozenset(
    {"help.getconfig", "help.getnearestdc", "ping", "pingdelaydisconnect"}
)


@attrs.define(eq=False)
class _Connection:
    number: int
    framing: Framing | None = None
    account: Account | None = None
    auth_key: bytes = b""
    session_id: bytes = b""
    salt: bytes = attrs.field(factory=lambda: os.urandom(8))
    content_messages: int = 0
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    outbox: trio.MemorySendChannel[bytes] | None = None
    handshake: handshake.Handshake | None = None

    def next_seq_no(self, content_related: bool) -> int:
        seq_no = self.content_messages * 2 + (1 if content_related else 0)
        if content_related:
            self.content_messages += 1
        return seq_no

    def send_frame(self, payload: bytes) -> None:
        if self.outbox is None or self.framing is None:
            return
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.outbox.send_nowait(self.framing.frame(payload))


# --------------------------------------------------------------------------- the server


class MTProtoServer:
    """A loopback MTProto server; open it with :func:`open_mtproto_server`.

    All methods are called from trio code in the same ``trio.run`` as the server.

    Attributes:
        host: the address it listens on.
        dc_id: the data centre it claims to be (and puts in new accounts' sessions).
        accounts: the accounts it knows, in creation order.
        calls: calls received from every account, by method name. A call wrapped in
            ``InvokeWithLayer(InitConnection(help.GetConfig))`` counts once for each of
            the three names; ``Ping`` and ``PingDelayDisconnect`` are counted too, and
            so are the key exchange's ``ReqPqMulti``, ``ReqDHParams`` and
            ``SetClientDHParams``.
        unhandled: calls answered with ``METHOD_INVALID`` for lack of a responder.
        connections_accepted: TCP connections accepted so far.
        accepted_at: ``trio.current_time()`` of every accepted TCP connection, in order:
            the connection attempts the server sees (a reconnecting herd).
        updates_pushed: updates delivered to connections so far.
        peak_sessions: for each account that ever had a connection, the most
            connections identified with its auth key at once (two is what Telegram
            answers with ``AUTH_KEY_DUPLICATED``).
        connected_at: for each account (by user id) that ever had a connection,
            ``trio.current_time()`` when its newest connection was identified (its
            first encrypted packet, answered unless black-holed): since when the
            account is back.
    """

    def __init__(self, *, host: str, port: int, dc_id: int) -> None:
        """Create a server that is not listening yet (see :func:`open_mtproto_server`).

        Args:
            host: the address to listen on.
            port: the port to listen on; 0 picks a free one on first listen.
            dc_id: the data centre the server claims to be.
        """
        self.host = host
        self.dc_id = dc_id
        self.accounts: list[Account] = []
        self.calls: Counter[str] = Counter()
        self.unhandled: Counter[str] = Counter()
        self.connections_accepted = 0
        self.accepted_at: list[float] = []
        self.updates_pushed = 0
        self.peak_sessions: dict[int, int] = {}
        self.connected_at: dict[int, float] = {}
        self._listener = RestartableListener(host, port, "the server", self._serve_connection)
        self._by_key_id: dict[bytes, Account] = {}
        self._keys: dict[bytes, bytes] = {}
        self._unbound_keys: dict[bytes, bytes] = {}
        self._faults: list[Fault] = []
        self._responders: dict[str, Responder] = {}
        self._connections: set[_Connection] = set()
        self._msg_ids = MsgIds()
        self._blackholed = False
        self._changed = trio.Event()
        self._builtin = BuiltinAnswers(self).table()

    # ----------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The port the server listens (or listened, or will listen again) on."""
        return self._listener.port

    @property
    def listening(self) -> bool:
        """Whether the server currently accepts connections."""
        return self._listener.listening

    def live_connections(self, account: Account | None = None) -> int:
        """Count open connections.

        Args:
            account: count only this account's (identified) connections; None counts
                every open connection, identified or not.

        Returns:
            The number of connections.
        """
        if account is None:
            return len(self._connections)
        return sum(1 for conn in self._connections if conn.account is account)

    def live_sessions(self) -> Counter[int]:
        """Open identified connections per account's ``user_id``, counted in one pass.

        For a watcher of many accounts: :meth:`live_connections` with an account
        walks every connection, so asking it for each of N accounts costs N².
        """
        return Counter(conn.account.user_id for conn in self._connections if conn.account)

    def max_concurrent_sessions(self, account: Account | None = None) -> int:
        """The most connections one account (or this one) ever had open at once."""
        if account is None:
            return max(self.peak_sessions.values(), default=0)
        return self.peak_sessions.get(account.user_id, 0)

    def _identify(self, conn: _Connection, account: Account | None) -> None:
        conn.account = account
        if account is not None:
            self.connected_at[account.user_id] = trio.current_time()
            live = self.live_connections(account)
            self.peak_sessions[account.user_id] = max(
                live, self.peak_sessions.get(account.user_id, 0)
            )
        self._notify()

    def call_count(self, method: MethodSpec, account: Account | None = None) -> int:
        """Return how many times a method was called.

        Args:
            method: the method, by name (case-insensitive) or class.
            account: count only this account's calls.

        Returns:
            The count.
        """
        key = method_key(method)
        counter = self.calls if account is None else account.calls
        return sum(n for name, n in counter.items() if name.lower() == key)

    # ----------------------------------------------------------------- accounts

    def new_account(
        self,
        *,
        user_id: int | None = None,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        phone: str | None = None,
        is_bot: bool = False,
        api_id: int = 12345,
        test_mode: bool = False,
        auth_key: bytes | None = None,
    ) -> Account:
        """Register a user with a fresh (or given) auth key.

        Args:
            user_id: the user's id; a fresh one when None.
            first_name: the user's first name.
            last_name: the user's last name.
            username: the user's username.
            phone: the user's phone number.
            is_bot: whether the user is a bot.
            api_id: the api_id written in the session string.
            test_mode: the test_mode flag written in the session string.
            auth_key: the 256-byte auth key; a random one when None.

        Returns:
            The account; give ``account.session_string`` to a Pyrogram ``Client``.

        Raises:
            ValueError: if the auth key is already registered or not 256 bytes long.
        """
        key = generate_auth_key() if auth_key is None else auth_key
        if len(key) != 256:
            raise ValueError("an MTProto auth key is 256 bytes long")
        if key_id_of(key) in self._by_key_id:
            raise ValueError("auth key already registered")
        account = Account(
            user_id=new_user_id() if user_id is None else user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            phone=phone,
            is_bot=is_bot,
            dc_id=self.dc_id,
            api_id=api_id,
            test_mode=test_mode,
            auth_key=key,
        )
        if is_bot:
            account.bot_token = f"{account.user_id}:{os.urandom(18).hex()}"
        self.accounts.append(account)
        self._bind(account.auth_key, account)
        return account

    def _bind(self, auth_key: bytes, account: Account) -> None:
        key_id = key_id_of(auth_key)
        self._unbound_keys.pop(key_id, None)
        self._by_key_id[key_id] = account
        self._keys[key_id] = auth_key

    def revoke(self, account: Account, revoked: bool = True) -> None:
        """Revoke (or restore) an account's session.

        A revoked session still connects (``Ping`` and ``help.GetConfig`` work, as on
        Telegram), but every other call is answered with 401 ``AUTH_KEY_UNREGISTERED``.

        Args:
            account: the account.
            revoked: True to revoke, False to restore.
        """
        account.revoked = revoked

    def forget(self, account: Account) -> None:
        """Forget an account's auth key: its packets get transport error -404.

        Pyrogram logs "auth key not found" and reconnects, forever. Open connections
        of the account are dropped.

        Args:
            account: the account.
        """
        for key_id in [k for k, a in self._by_key_id.items() if a is account]:
            del self._by_key_id[key_id]
            del self._keys[key_id]
        self.drop(account)

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        account: Account | None,
        method: MethodSpec | None,
        error: RpcFailure | FaultAction,
        *,
        times: int | None = 1,
    ) -> Fault:
        """Inject a fault into the next matching call(s).

        Faults are checked in the order they were added; the first that matches a call
        applies to it.

        Args:
            account: the account whose calls fail; None for every account.
            method: the method that fails; a wrapper name (``"InitConnection"``) matches
                calls wrapped in it. None matches any RPC call but not ``Ping`` or
                ``PingDelayDisconnect``, which only fail when named.
            error: the RPC error to answer with, or a :class:`FaultAction`.
            times: how many calls fail; None for every call until cancelled.

        Returns:
            The fault; ``fault.cancel()`` removes it early.

        Raises:
            ValueError: if ``times`` is not positive.
        """
        if times is not None and times < 1:
            raise ValueError("times must be positive or None")
        fault = Fault(
            account=account,
            method=None if method is None else method_key(method),
            action=error,
            remaining=times,
            active=self._faults,
        )
        self._faults.append(fault)
        return fault

    def fail_always(
        self,
        account: Account | None,
        method: MethodSpec | None,
        error: RpcFailure | FaultAction,
    ) -> Fault:
        """Inject a fault into every matching call until it is cancelled.

        Args:
            account: the account whose calls fail; None for every account.
            method: the method that fails (see :meth:`fail_next`).
            error: the RPC error to answer with, or a :class:`FaultAction`.

        Returns:
            The fault; ``fault.cancel()`` removes it.
        """
        return self.fail_next(account, method, error, times=None)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        for fault in list(self._faults):
            fault.cancel()

    def set_responder(self, method: MethodSpec, responder: Responder | None) -> None:
        """Answer a method with a function (or go back to the built-in answer).

        Args:
            method: the method.
            responder: ``(account, query) -> TL object | RpcFailure``; the query is the
                unwrapped ``pyrogram.raw.functions`` object. None removes it. It is not
                called for revoked or not-logged-in sessions (they get 401
                ``AUTH_KEY_UNREGISTERED``) unless the method is one Telegram answers
                without authorisation (``help.GetConfig``, ``help.GetNearestDc``).
        """
        if responder is None:
            self._responders.pop(method_key(method), None)
        else:
            self._responders[method_key(method)] = responder

    def drop(self, account: Account | None = None) -> int:
        """Close connections at once (the client sees the TCP connection end).

        Args:
            account: close this account's connections; None closes every connection.

        Returns:
            The number of connections closed.
        """
        closing = [c for c in self._connections if account is None or c.account is account]
        for conn in closing:
            conn.scope.cancel()
        return len(closing)

    def blackhole(self, account: Account | None = None, on: bool = True) -> None:
        """Stop (or resume) answering: connections stay open but nothing is sent back.

        Packets that arrive while black-holed are read and discarded unanswered (and not
        counted in :attr:`calls`), pings included; pushed updates are discarded too.
        Applies to open and future connections.

        Args:
            account: black-hole this account's connections; None black-holes all.
            on: True to black-hole, False to resume answering.
        """
        if account is None:
            self._blackholed = on
        else:
            account.blackholed = on

    async def stop_listening(self, *, drop_connections: bool = True) -> None:
        """Stop accepting connections (the port is closed: connects are refused).

        Args:
            drop_connections: also close the open connections, as a restarting
                server would.
        """
        await self._listener.stop()
        if drop_connections:
            self.drop()

    async def start_listening(self) -> None:
        """Accept connections again, on the same port.

        Raises:
            RuntimeError: if the server is closed.
            OSError: if the port cannot be bound.
        """
        await self._listener.start()

    # ----------------------------------------------------------------- updates

    def push_update(self, account: Account, update: Any) -> int:
        """Send an update to every open connection of an account.

        Args:
            account: the receiving account.
            update: a ``pyrogram.raw`` ``Updates``-family object (``Updates``,
                ``UpdateShort``, ``UpdateShortMessage``, ...), or a bare ``Update*``
                constructor, which is wrapped in ``UpdateShort``.

        Returns:
            The number of connections it was sent to (0 when none is open or all are
            black-holed).

        Raises:
            TypeError: if ``update`` is not an update.
        """
        if not isinstance(update, _UPDATES_FAMILY):
            qualname = getattr(type(update), "QUALNAME", "")
            if not qualname.startswith("types.Update"):
                raise TypeError(f"not an update: {update!r}")
            update = raw.types.UpdateShort(update=update, date=int(unix_now()))
        body = update.write()
        sent = 0
        for conn in list(self._connections):
            if conn.account is account and conn.session_id and not self._is_blackholed(conn):
                self._send(conn, body, content_related=True, response=False)
                sent += 1
        self.updates_pushed += sent
        return sent

    def push_message(
        self,
        account: Account,
        text: str,
        *,
        sender: Account | int | None = None,
        sender_name: str = "Sender",
        short: bool = False,
    ) -> int:
        """Deliver a private text message to an account, as Telegram would.

        The message is kept for ``updates.GetDifference``, so a client that was offline
        (or that receives the ``short`` form) fetches it.

        Args:
            account: the receiving account.
            text: the message text.
            sender: the sending account, or a user id; a fresh user id when None.
            sender_name: the sender's first name when ``sender`` is not an account.
            short: send ``UpdateShortMessage`` (Pyrogram then calls
                ``updates.GetDifference``) instead of ``Updates([UpdateNewMessage])``.

        Returns:
            The message id.
        """
        message_id, update = account._record_message(
            text, sender=sender, sender_name=sender_name, short=short
        )
        self.push_update(account, update)
        return message_id

    # ----------------------------------------------------------------- waiting

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true; it is re-checked whenever the server's
        state changes (a connection opens or closes, a call arrives).

        Args:
            predicate: the condition.
        """
        while True:
            changed = self._changed
            if predicate():
                return
            await changed.wait()

    async def wait_for_connection(self, account: Account | None = None, count: int = 1) -> None:
        """Wait until at least ``count`` connections are open.

        Args:
            account: count only this account's identified connections.
            count: how many.
        """
        await self.wait_until(lambda: self.live_connections(account) >= count)

    async def wait_for_calls(
        self, method: MethodSpec, count: int = 1, account: Account | None = None
    ) -> None:
        """Wait until a method has been called at least ``count`` times in total.

        Args:
            method: the method.
            count: the total to reach.
            account: count only this account's calls.
        """
        await self.wait_until(lambda: self.call_count(method, account) >= count)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ----------------------------------------------------------------- serving

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._listener.run(task_status=task_status)

    async def _serve_connection(self, stream: trio.SocketStream, number: int) -> None:
        conn = _Connection(number=number)
        send, receive = trio.open_memory_channel[bytes](math.inf)
        conn.outbox = send
        self._connections.add(conn)
        self.connections_accepted += 1
        self.accepted_at.append(trio.current_time())
        self._notify()
        try:
            with conn.scope:
                async with stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, stream, receive)
                    try:
                        await self._read_loop(conn, Reader(stream))
                    finally:
                        send.close()
        finally:
            self._connections.discard(conn)
            self._notify()

    async def _write_loop(
        self, stream: trio.SocketStream, receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with receive:
                async for frame in receive:
                    await stream.send_all(frame)

    async def _read_loop(self, conn: _Connection, reader: Reader) -> None:
        try:
            conn.framing = await Framing.detect(reader)
            while True:
                packet = await conn.framing.read_frame(reader)
                if not self._handle_packet(conn, packet):
                    return
        except (EndOfStream, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except ProtocolError as exc:
            log.debug("connection %d: %s", conn.number, exc)
            return

    def _is_blackholed(self, conn: _Connection) -> bool:
        return self._blackholed or (conn.account is not None and conn.account.blackholed)

    def _handle_packet(self, conn: _Connection, packet: bytes) -> bool:
        """Handle one transport frame; False closes the connection (after flushing)."""
        if len(packet) < 8:
            raise ProtocolError("short packet")
        key_id = packet[:8]
        if key_id == b"\x00" * 8:
            if self._is_blackholed(conn):
                return True
            return self._handle_plain(conn, packet)
        account = self._by_key_id.get(key_id)
        if account is not None:
            auth_key = self._keys[key_id]
        elif key_id in self._unbound_keys:
            auth_key = self._unbound_keys[key_id]
        else:
            conn.send_frame(struct.pack("<i", TRANSPORT_AUTH_KEY_NOT_FOUND))
            return False
        if conn.account is not account or conn.auth_key != auth_key:
            conn.auth_key = auth_key
            self._identify(conn, account)
        if self._is_blackholed(conn):
            return True
        session_id, msg_id, _seq_no, body = decrypt(auth_key, packet)
        conn.session_id = session_id
        self._handle_message(conn, msg_id, body)
        return True

    def _handle_plain(self, conn: _Connection, packet: bytes) -> bool:
        """Handle an unencrypted message (the auth-key exchange)."""
        if len(packet) < 20:
            raise ProtocolError("short plain message")
        (length,) = struct.unpack("<i", packet[16:20])
        body = packet[20 : 20 + length]
        if conn.handshake is None:
            conn.handshake = handshake.Handshake()
        try:
            query = TLObject.read(BytesIO(body))
        except Exception as exc:  # an unknown constructor, or garbage
            raise ProtocolError("unreadable plain message") from exc
        self._count(None, [short_name(query)])
        try:
            answer = conn.handshake.answer(query)
        except handshake.HandshakeError as exc:
            raise ProtocolError(f"key exchange: {exc}") from exc
        payload = answer.write()
        msg_id = self._msg_ids.next(response=True)
        conn.send_frame(b"\x00" * 8 + struct.pack("<qi", msg_id, len(payload)) + payload)
        if conn.handshake.auth_key is not None:
            key = conn.handshake.auth_key
            self._unbound_keys[key_id_of(key)] = key
            conn.handshake = None
        return True

    def _send(
        self, conn: _Connection, body: bytes, *, content_related: bool, response: bool
    ) -> None:
        payload = encrypt(
            conn.auth_key,
            conn.salt,
            conn.session_id,
            self._msg_ids.next(response=response),
            conn.next_seq_no(content_related),
            body,
        )
        conn.send_frame(payload)

    def _reply(self, conn: _Connection, req_msg_id: int, result: Any) -> None:
        if isinstance(result, RpcFailure):
            result = raw.types.RpcError(error_code=result.code, error_message=result.message)
        body = raw.types.RpcResult(req_msg_id=req_msg_id, result=result).write()
        self._send(conn, body, content_related=True, response=True)

    def _count(self, account: Account | None, names: list[str]) -> None:
        for name in names:
            self.calls[name] += 1
            if account is not None:
                account.calls[name] += 1
        self._notify()

    def _handle_message(self, conn: _Connection, msg_id: int, body: bytes) -> None:
        if body[:4] == struct.pack("<I", CONTAINER_ID):
            for inner_id, _seq_no, inner in split_messages(body[4:]):
                self._handle_message(conn, inner_id, inner)
            return
        try:
            query = TLObject.read(BytesIO(body))
        except Exception:  # an unknown constructor: a newer layer, or garbage
            self._reply(conn, msg_id, INPUT_CONSTRUCTOR_INVALID)
            return
        if isinstance(query, (raw.types.MsgsAck, raw.types.HttpWait)):
            return
        service = isinstance(query, (raw.functions.Ping, raw.functions.PingDelayDisconnect))
        names = [short_name(query)]
        while isinstance(query, _WRAPPERS):
            query = query.query
            names.append(short_name(query))
        account = conn.account
        self._count(account, names)
        fault = take_fault(self._faults, account, names, service)
        if fault is not None:
            if fault.action is FaultAction.DROP_CONNECTION:
                conn.scope.cancel()
            elif isinstance(fault.action, RpcFailure):
                self._reply(conn, msg_id, fault.action)
            return
        if service:
            pong = raw.types.Pong(msg_id=msg_id, ping_id=query.ping_id).write()
            self._send(conn, pong, content_related=False, response=True)
            return
        self._reply(conn, msg_id, self._answer(conn, names[-1], query))

    def _answer(self, conn: _Connection, name: str, query: Any) -> Any:
        key = name.lower()
        account = conn.account
        if key == "auth.importbotauthorization" and key not in self._responders:
            return self._import_bot_authorization(conn, query)
        responder = self._responders.get(key) or self._builtin.get(key)
        if responder is None:
            self.unhandled[name] += 1
            return METHOD_INVALID
        if account is None or account.revoked:
            if key not in _WITHOUT_AUTHORISATION:
                return AUTH_KEY_UNREGISTERED
            account = account or self._anonymous
        return responder(account, query)

    @property
    def _anonymous(self) -> Account:
        return Account(
            user_id=0,
            first_name="",
            last_name=None,
            username=None,
            phone=None,
            is_bot=False,
            dc_id=self.dc_id,
            api_id=0,
            test_mode=False,
            auth_key=b"",
        )

    # ----------------------------------------------------------------- bot logins

    def _import_bot_authorization(self, conn: _Connection, query: Any) -> Any:
        for account in self.accounts:
            if account.bot_token is not None and account.bot_token == query.bot_auth_token:
                self._bind(conn.auth_key, account)
                self._identify(conn, account)
                return raw.types.auth.Authorization(user=account.raw_user(is_self=True))
        return RpcFailure(400, "ACCESS_TOKEN_INVALID")


@contextlib.asynccontextmanager
async def open_mtproto_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    dc_id: int = 2,
    redirect: bool = True,
) -> AsyncIterator[MTProtoServer]:
    """Run a loopback MTProto server for the duration of an ``async with`` block.

    Args:
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one (see ``server.port``).
        dc_id: the data centre the server claims to be.
        redirect: point every Pyrogram data centre at this server for the block's
            duration (:func:`redirect_pyrogram`). Pass False when running several
            servers, and redirect chosen data centres yourself.

    Yields:
        The listening server. Leaving the block closes every connection.
    """
    server = MTProtoServer(host=host, port=port, dc_id=dc_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(server._run)
        try:
            redirecting = redirect_pyrogram(server.port, host=host)
            with redirecting if redirect else contextlib.nullcontext():
                yield server
        finally:
            nursery.cancel_scope.cancel()
