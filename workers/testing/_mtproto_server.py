"""A loopback MTProto server on trio that a real Pyrogram client connects to (test-only).

The server speaks enough of MTProto 2.0 for Pyrogram 2.0.x to connect, call
``get_me()``, receive pushed updates and see the failures a worker must survive:

- transport: TCP abridged (Pyrogram's default) and intermediate framing;
- encryption: Pyrogram's own ``pyrogram.crypto`` (``mtproto.kdf``, AES-256-IGE through
  tgcrypto or Pyrogram's fallback) in the server direction;
- (de)serialisation: Pyrogram's ``pyrogram.raw`` TL types, both ways;
- auth: a pre-shared auth key per :class:`Account`, handed to the client through a
  session string (:attr:`Account.session_string`). The key exchange of a fresh client
  (no session) is answered too (``workers._mtproto_handshake``): the new key is not
  logged in (``connect()`` returns ``False``, authorised calls get 401) until a bot
  logs in with ``Client(bot_token=account.bot_token)`` (``auth.ImportBotAuthorization``);
  user logins (``auth.SendCode``/``auth.SignIn``) are not implemented;
- calls answered: ``Ping``/``PingDelayDisconnect`` (``Pong``), ``MsgsAck``, message
  containers, the ``InvokeWithLayer``/``InitConnection``/``InvokeWithoutUpdates``/...
  wrappers, ``help.GetConfig``, ``help.GetNearestDc``, ``updates.GetState``,
  ``updates.GetDifference``, ``users.GetUsers``, ``users.GetFullUser``,
  ``account.UpdateStatus``, ``auth.LogOut``, ``auth.ImportBotAuthorization``;
  everything else gets an ``rpc_error`` (400 ``METHOD_INVALID``) unless a responder is
  registered with :meth:`MTProtoServer.set_responder`;
- faults, per account or global: RPC errors on chosen methods or on the next call,
  swallowed calls, dropped connections, black-holed connections (TCP up, nothing
  answered, not even pings), revoked sessions, and stopping/restarting the listener on
  the same port.

Pointing Pyrogram at the server: Pyrogram takes its data-centre addresses from
``pyrogram.session.internals.DataCenter`` (a class whose ``__new__`` returns an
``(ip, port)`` tuple). :func:`redirect_pyrogram` replaces that ``__new__`` for the
duration of a ``with`` block, and :func:`open_mtproto_server` does so for its lifetime
by default. This is a process-wide monkeypatch meant for tests only.

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

import base64
import contextlib
import enum
import hashlib
import itertools
import logging
import math
import os
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from io import BytesIO
from typing import Any, Final, TypeAlias

import attrs
import pyrogram.raw
import trio
from pyrogram.crypto import aes, mtproto
from pyrogram.raw.core.tl_object import TLObject
from pyrogram.session.internals.data_center import DataCenter

from . import _mtproto_handshake as handshake
from ._listener import RestartableListener

# ``pyrogram.raw`` is generated code whose modules do not re-export their names, so under
# ``mypy --strict`` (no implicit re-export) every ``raw.types.X`` would be an error: use
# it untyped.
raw: Any = pyrogram.raw

__all__ = [
    "AUTH_KEY_DUPLICATED",
    "AUTH_KEY_UNREGISTERED",
    "METHOD_INVALID",
    "RPC_CALL_FAIL",
    "Account",
    "Fault",
    "FaultAction",
    "MTProtoServer",
    "MethodSpec",
    "Responder",
    "RpcFailure",
    "generate_auth_key",
    "method_name",
    "open_mtproto_server",
    "redirect_pyrogram",
    "session_string",
]

log = logging.getLogger(__name__)

MethodSpec: TypeAlias = "str | type[Any]"
"""A method: Pyrogram's short name (``"users.GetFullUser"``, ``"Ping"``), the TL name
(``"users.getFullUser"``, case-insensitive) or the ``pyrogram.raw.functions`` class."""

Responder: TypeAlias = "Callable[[Account, Any], Any]"
"""Answers one call: ``(account, query) -> TL object | RpcFailure``."""


# --------------------------------------------------------------------------- errors


@attrs.frozen
class RpcFailure:
    """An ``rpc_error`` the server answers a call with.

    Pyrogram maps ``code`` to an exception family and ``message`` (digits replaced by
    ``_X``) to a class; the number in the message becomes ``exc.value``. A message that
    Pyrogram does not know makes it append a line to ``unknown_errors.txt`` in the
    current working directory, so prefer known messages.

    Attributes:
        code: the error code (420, 401, 406, 500, ...).
        message: the error message (``"FLOOD_WAIT_30"``, ...).
    """

    code: int
    message: str

    @classmethod
    def flood_wait(cls, seconds: int) -> RpcFailure:
        """Return a 420 ``FLOOD_WAIT_<seconds>``, raised as ``pyrogram.errors.FloodWait``.

        Args:
            seconds: the wait, which becomes ``FloodWait.value``.

        Returns:
            The failure.
        """
        return cls(420, f"FLOOD_WAIT_{seconds}")


AUTH_KEY_UNREGISTERED: Final = RpcFailure(401, "AUTH_KEY_UNREGISTERED")
"""401, raised as ``pyrogram.errors.AuthKeyUnregistered`` (an ``Unauthorized``)."""
AUTH_KEY_DUPLICATED: Final = RpcFailure(406, "AUTH_KEY_DUPLICATED")
"""406, raised as ``pyrogram.errors.AuthKeyDuplicated`` (a ``NotAcceptable``)."""
RPC_CALL_FAIL: Final = RpcFailure(500, "RPC_CALL_FAIL")
"""500, raised as ``pyrogram.errors.RpcCallFail`` (an ``InternalServerError``; Pyrogram
retries 500s ``retries`` times, 0.5 s apart, before raising)."""
METHOD_INVALID: Final = RpcFailure(400, "METHOD_INVALID")
"""400, the answer to a call the server has no responder for."""
_INPUT_CONSTRUCTOR_INVALID: Final = RpcFailure(400, "INPUT_CONSTRUCTOR_INVALID")


class FaultAction(enum.Enum):
    """A fault that is not an RPC error."""

    DROP_CONNECTION = "drop-connection"
    """Close the TCP connection instead of answering the call."""
    NO_REPLY = "no-reply"
    """Swallow the call: it is never answered (the connection stays healthy)."""


# --------------------------------------------------------------------------- session strings


def generate_auth_key() -> bytes:
    """Return a random 2048-bit MTProto auth key.

    Returns:
        256 random bytes.
    """
    return os.urandom(256)


def _auth_key_id(auth_key: bytes) -> bytes:
    return hashlib.sha1(auth_key).digest()[-8:]


def session_string(
    *,
    dc_id: int,
    api_id: int,
    test_mode: bool,
    auth_key: bytes,
    user_id: int,
    is_bot: bool,
) -> str:
    """Pack a Pyrogram v2 session string (``Storage.SESSION_STRING_FORMAT``).

    Args:
        dc_id: the data centre the session lives on.
        api_id: the application id (any positive int for the loopback server).
        test_mode: whether the session is for Telegram's test servers.
        auth_key: the 256-byte auth key.
        user_id: the logged-in user's id.
        is_bot: whether the user is a bot.

    Returns:
        The session string, as ``Client.export_session_string()`` would give it.

    Raises:
        ValueError: if ``auth_key`` is not 256 bytes long.
    """
    if len(auth_key) != 256:
        raise ValueError("an MTProto auth key is 256 bytes long")
    packed = struct.pack(">BI?256sQ?", dc_id, api_id, test_mode, auth_key, user_id, is_bot)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def method_name(method: MethodSpec) -> str:
    """Return Pyrogram's short name of a method (``"users.GetFullUser"``).

    Args:
        method: a name or a ``pyrogram.raw.functions`` class.

    Returns:
        The name as used in :attr:`MTProtoServer.calls` for classes; names are
        returned unchanged.

    Raises:
        TypeError: if ``method`` is neither a string nor a ``pyrogram.raw.functions``
            class.
    """
    if isinstance(method, str):
        return method
    qualname = getattr(method, "QUALNAME", None)
    if not isinstance(qualname, str) or not qualname.startswith("functions."):
        raise TypeError(f"not a pyrogram.raw.functions class: {method!r}")
    return qualname.removeprefix("functions.")


def _key(method: MethodSpec) -> str:
    return method_name(method).lower()


def _short_name(obj: Any) -> str:
    qualname: str = type(obj).QUALNAME
    return qualname.split(".", 1)[1] if "." in qualname else qualname


# --------------------------------------------------------------------------- DataCenter redirect


@attrs.define(eq=False)
class _Route:
    address: tuple[str, int]
    dc_ids: frozenset[int] | None


_routes: list[_Route] = []
_original_new: Any = None


def _patched_new(cls: Any, dc_id: int, test_mode: bool, ipv6: bool, media: bool) -> Any:
    for route in reversed(_routes):
        if route.dc_ids is None or dc_id in route.dc_ids:
            return route.address
    return _original_new.__func__(cls, dc_id, test_mode, ipv6, media)


@contextlib.contextmanager
def redirect_pyrogram(
    port: int, *, host: str = "127.0.0.1", dc_ids: Iterable[int] | None = None
) -> Iterator[None]:
    """Make Pyrogram connect to ``host:port`` instead of Telegram's data centres (test-only).

    Replaces ``pyrogram.session.internals.DataCenter.__new__`` (which every
    ``Connection`` consults, at each reconnect) while any redirect is active; the
    original is restored when the last one ends. Redirects nest: the innermost one that
    covers a data centre wins. IPv4 only (a client with ``ipv6=True`` would connect an
    IPv6 socket to an IPv4 address).

    Args:
        port: the server's port.
        host: the server's address.
        dc_ids: the data centres to redirect; all of them when None.

    Yields:
        Nothing; the redirect lasts for the ``with`` block.
    """
    global _original_new
    route = _Route((host, port), None if dc_ids is None else frozenset(dc_ids))
    if not _routes:
        _original_new = DataCenter.__dict__["__new__"]
        setattr(DataCenter, "__new__", staticmethod(_patched_new))  # noqa: B010
    _routes.append(route)
    try:
        with handshake.install_test_rsa_key():
            yield
    finally:
        _routes.remove(route)
        if not _routes:
            setattr(DataCenter, "__new__", _original_new)  # noqa: B010
            _original_new = None


# --------------------------------------------------------------------------- accounts


_user_ids = itertools.count(1_000_001)


def _access_hash(user_id: int) -> int:
    return int.from_bytes(hashlib.sha256(b"access:%d" % user_id).digest()[:8], "big") >> 1


@attrs.define(eq=False)
class Account:
    """A user known to the server, with its pre-shared auth key.

    Create accounts with :meth:`MTProtoServer.new_account`. Identity is by object.

    Attributes:
        user_id: the user's id.
        first_name: the user's first name.
        last_name: the user's last name.
        username: the user's username.
        phone: the user's phone number.
        is_bot: whether the user is a bot.
        dc_id: the data centre in the session string.
        api_id: the api_id in the session string.
        test_mode: the test_mode flag in the session string.
        auth_key: the 256-byte auth key given through :attr:`session_string`.
        bot_token: for bots, the token that ``Client(bot_token=...)`` logs in with
            (after a key exchange).
        calls: calls made with this account's auth key, by method name (wrappers such
            as ``InitConnection`` are counted too).
        revoked: whether the session is revoked: every call that needs authorisation is
            answered with 401 ``AUTH_KEY_UNREGISTERED``.
        blackholed: whether this account's connections are black-holed.
    """

    user_id: int
    first_name: str
    last_name: str | None
    username: str | None
    phone: str | None
    is_bot: bool
    dc_id: int
    api_id: int
    test_mode: bool
    auth_key: bytes = attrs.field(repr=False)
    bot_token: str | None = attrs.field(default=None, init=False, repr=False)
    calls: Counter[str] = attrs.field(factory=Counter, init=False, repr=False)
    revoked: bool = attrs.field(default=False, init=False)
    blackholed: bool = attrs.field(default=False, init=False)
    _pts: int = attrs.field(default=0, init=False, repr=False)
    _message_id: int = attrs.field(default=0, init=False, repr=False)
    _history: list[tuple[int, Any, list[Any]]] = attrs.field(factory=list, init=False, repr=False)

    @property
    def auth_key_id(self) -> bytes:
        """The 8-byte auth key id (the low 64 bits of the key's SHA-1)."""
        return _auth_key_id(self.auth_key)

    @property
    def session_string(self) -> str:
        """A Pyrogram session string that logs in as this account."""
        return session_string(
            dc_id=self.dc_id,
            api_id=self.api_id,
            test_mode=self.test_mode,
            auth_key=self.auth_key,
            user_id=self.user_id,
            is_bot=self.is_bot,
        )

    @property
    def pts(self) -> int:
        """The account's update sequence (``pts``), advanced by each pushed message."""
        return self._pts

    def raw_user(self, *, is_self: bool = False) -> Any:
        """Return the account's user as a ``pyrogram.raw.types.User``.

        Args:
            is_self: set the ``self`` flag (as in answers to the account itself).

        Returns:
            The TL object.
        """
        return raw.types.User(
            id=self.user_id,
            is_self=is_self or None,
            bot=self.is_bot or None,
            access_hash=_access_hash(self.user_id),
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone,
            bot_info_version=1 if self.is_bot else None,
        )


# --------------------------------------------------------------------------- faults


@attrs.define(eq=False)
class Fault:
    """An injected fault, as returned by :meth:`MTProtoServer.fail_next`.

    Attributes:
        account: the account it applies to; None for every account.
        method: the method it applies to (lower-cased name); None for any RPC call
            (service messages such as ``Ping`` are only matched by name).
        action: the RPC error to answer with, or a :class:`FaultAction`.
        remaining: how many more calls it applies to; None for unlimited.
        hits: how many calls it has applied to.
    """

    account: Account | None
    method: str | None
    action: RpcFailure | FaultAction
    remaining: int | None
    hits: int = 0
    _server: MTProtoServer | None = attrs.field(default=None, repr=False)

    def cancel(self) -> None:
        """Remove the fault; calls are answered normally again."""
        if self._server is not None:
            with contextlib.suppress(ValueError):
                self._server._faults.remove(self)
            self._server = None

    def _matches(self, account: Account | None, names: list[str], service: bool) -> bool:
        if self.account is not None and self.account is not account:
            return False
        if self.method is None:
            return not service
        return any(name.lower() == self.method for name in names)


# --------------------------------------------------------------------------- wire format


class _ProtocolError(Exception):
    """The peer broke the protocol; the connection is closed."""


class _EndOfStream(Exception):
    """The peer closed the connection."""


_MAX_FRAME: Final = 16 * 1024 * 1024
_CONTAINER_ID: Final = 0x73F1F8DC
_TRANSPORT_AUTH_KEY_NOT_FOUND: Final = -404


class _Encoded:
    """Pre-serialised TL bytes with the ``write()`` that ``pyrogram.raw`` expects."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write(self, *args: Any) -> bytes:
        return self.data


_BOOL_TRUE: Final = _Encoded(struct.pack("<I", 0x997275B5))


def _vector(items: list[Any]) -> _Encoded:
    data = struct.pack("<Ii", 0x1CB5C415, len(items)) + b"".join(i.write() for i in items)
    return _Encoded(data)


class _Reader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise _EndOfStream
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class _Framing(enum.Enum):
    ABRIDGED = "abridged"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded-intermediate"

    @classmethod
    async def detect(cls, reader: _Reader) -> _Framing:
        first = await reader.read_exactly(1)
        if first == b"\xef":
            return cls.ABRIDGED
        rest = await reader.read_exactly(3)
        if first + rest == b"\xee\xee\xee\xee":
            return cls.INTERMEDIATE
        if first + rest == b"\xdd\xdd\xdd\xdd":
            return cls.PADDED_INTERMEDIATE
        raise _ProtocolError(f"unsupported transport: {(first + rest).hex()}")

    async def read_frame(self, reader: _Reader) -> bytes:
        if self is _Framing.ABRIDGED:
            n = (await reader.read_exactly(1))[0] & 0x7F  # the high bit asks for a quick ack
            if n == 0x7F:
                n = int.from_bytes(await reader.read_exactly(3), "little")
            length = n * 4
        else:
            length = int.from_bytes(await reader.read_exactly(4), "little") & 0x7FFFFFFF
        if length > _MAX_FRAME:
            raise _ProtocolError(f"frame of {length} bytes")
        return await reader.read_exactly(length)

    def frame(self, payload: bytes) -> bytes:
        if self is _Framing.ABRIDGED:
            n = len(payload) // 4
            header = bytes([n]) if n < 0x7F else b"\x7f" + n.to_bytes(3, "little")
            return header + payload
        if self is _Framing.PADDED_INTERMEDIATE:
            payload += os.urandom(int.from_bytes(os.urandom(1), "little") % 16)
        return len(payload).to_bytes(4, "little") + payload


class _MsgIds:
    """Server message ids: increasing, ``1 mod 4`` for answers, ``3 mod 4`` otherwise."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, *, response: bool) -> int:
        candidate = max(int(handshake.unix_now() * 2**32), self._last + 1)
        candidate += (1 if response else 3) - candidate % 4
        if candidate <= self._last:
            candidate += 4
        self._last = candidate
        return candidate


def _split_messages(body: bytes) -> list[tuple[int, int, bytes]]:
    """Split a ``msg_container`` body (after its constructor id) into messages."""
    buffer = BytesIO(body)
    if len(body) < 4:
        raise _ProtocolError("truncated container")
    (count,) = struct.unpack("<i", buffer.read(4))
    messages = []
    for _ in range(count):
        header = buffer.read(16)
        if len(header) != 16:
            raise _ProtocolError("truncated container")
        msg_id, seq_no, length = struct.unpack("<qii", header)
        inner = buffer.read(length)
        if len(inner) != length:
            raise _ProtocolError("truncated container")
        messages.append((msg_id, seq_no, inner))
    return messages


def _decrypt(auth_key: bytes, packet: bytes) -> tuple[bytes, int, int, bytes]:
    """Decrypt a client packet: ``(session_id, msg_id, seq_no, body)``."""
    msg_key = packet[8:24]
    ciphertext = packet[24:]
    ciphertext = ciphertext[: len(ciphertext) - len(ciphertext) % 16]
    if not ciphertext:
        raise _ProtocolError("empty encrypted message")
    aes_key, aes_iv = mtproto.kdf(auth_key, msg_key, True)
    data: bytes = aes.ige256_decrypt(ciphertext, aes_key, aes_iv)
    if hashlib.sha256(auth_key[88:120] + data).digest()[8:24] != msg_key:
        raise _ProtocolError("msg_key mismatch")
    session_id = data[8:16]
    msg_id, seq_no, length = struct.unpack("<qii", data[16:32])
    if not 0 <= length <= len(data) - 32:
        raise _ProtocolError("bad message length")
    return session_id, msg_id, seq_no, data[32 : 32 + length]


def _encrypt(
    auth_key: bytes, salt: bytes, session_id: bytes, msg_id: int, seq_no: int, body: bytes
) -> bytes:
    data = salt + session_id + struct.pack("<qii", msg_id, seq_no, len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    msg_key = hashlib.sha256(auth_key[96:128] + data + padding).digest()[8:24]
    aes_key, aes_iv = mtproto.kdf(auth_key, msg_key, False)
    ciphertext: bytes = aes.ige256_encrypt(data + padding, aes_key, aes_iv)
    return _auth_key_id(auth_key) + msg_key + ciphertext


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
    framing: _Framing | None = None
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
        updates_pushed: updates delivered to connections so far.
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
        self.updates_pushed = 0
        self._listener = RestartableListener(host, port, "the server", self._serve_connection)
        self._by_key_id: dict[bytes, Account] = {}
        self._keys: dict[bytes, bytes] = {}
        self._unbound_keys: dict[bytes, bytes] = {}
        self._faults: list[Fault] = []
        self._responders: dict[str, Responder] = {}
        self._connections: set[_Connection] = set()
        self._msg_ids = _MsgIds()
        self._blackholed = False
        self._changed = trio.Event()
        self._builtin: dict[str, Responder] = {
            "help.getconfig": self._get_config,
            "help.getnearestdc": self._get_nearest_dc,
            "updates.getstate": self._get_state,
            "updates.getdifference": self._get_difference,
            "users.getusers": self._get_users,
            "users.getfulluser": self._get_full_user,
            "account.updatestatus": lambda account, query: _BOOL_TRUE,
            "auth.logout": self._log_out,
        }

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

    def call_count(self, method: MethodSpec, account: Account | None = None) -> int:
        """Return how many times a method was called.

        Args:
            method: the method, by name (case-insensitive) or class.
            account: count only this account's calls.

        Returns:
            The count.
        """
        key = _key(method)
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
        if _auth_key_id(key) in self._by_key_id:
            raise ValueError("auth key already registered")
        account = Account(
            user_id=next(_user_ids) if user_id is None else user_id,
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
        key_id = _auth_key_id(auth_key)
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
            method=None if method is None else _key(method),
            action=error,
            remaining=times,
            server=self,
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
            self._responders.pop(_key(method), None)
        else:
            self._responders[_key(method)] = responder

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
            update = raw.types.UpdateShort(update=update, date=int(handshake.unix_now()))
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
        if isinstance(sender, Account):
            sender_user = sender.raw_user()
        else:
            sender_id = next(_user_ids) if sender is None else sender
            sender_user = raw.types.User(
                id=sender_id, access_hash=_access_hash(sender_id), first_name=sender_name
            )
        now = int(handshake.unix_now())
        account._pts += 1
        account._message_id += 1
        message = raw.types.Message(
            id=account._message_id,
            peer_id=raw.types.PeerUser(user_id=sender_user.id),
            from_id=raw.types.PeerUser(user_id=sender_user.id),
            date=now,
            message=text,
        )
        users = [sender_user, account.raw_user(is_self=True)]
        account._history.append((account._pts, message, users))
        update: Any
        if short:
            update = raw.types.UpdateShortMessage(
                id=message.id,
                user_id=sender_user.id,
                message=text,
                pts=account._pts,
                pts_count=1,
                date=now,
            )
        else:
            update = raw.types.Updates(
                updates=[
                    raw.types.UpdateNewMessage(message=message, pts=account._pts, pts_count=1)
                ],
                users=users,
                chats=[],
                date=now,
                seq=0,
            )
        self.push_update(account, update)
        return int(message.id)

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
        self._notify()
        try:
            with conn.scope:
                async with stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, stream, receive)
                    try:
                        await self._read_loop(conn, _Reader(stream))
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

    async def _read_loop(self, conn: _Connection, reader: _Reader) -> None:
        try:
            conn.framing = await _Framing.detect(reader)
            while True:
                packet = await conn.framing.read_frame(reader)
                if not self._handle_packet(conn, packet):
                    return
        except (_EndOfStream, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except _ProtocolError as exc:
            log.debug("connection %d: %s", conn.number, exc)
            return

    def _is_blackholed(self, conn: _Connection) -> bool:
        return self._blackholed or (conn.account is not None and conn.account.blackholed)

    def _handle_packet(self, conn: _Connection, packet: bytes) -> bool:
        """Handle one transport frame; False closes the connection (after flushing)."""
        if len(packet) < 8:
            raise _ProtocolError("short packet")
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
            conn.send_frame(struct.pack("<i", _TRANSPORT_AUTH_KEY_NOT_FOUND))
            return False
        if conn.account is not account or conn.auth_key != auth_key:
            conn.account, conn.auth_key = account, auth_key
            self._notify()
        if self._is_blackholed(conn):
            return True
        session_id, msg_id, _seq_no, body = _decrypt(auth_key, packet)
        conn.session_id = session_id
        self._handle_message(conn, msg_id, body)
        return True

    def _handle_plain(self, conn: _Connection, packet: bytes) -> bool:
        """Handle an unencrypted message (the auth-key exchange)."""
        if len(packet) < 20:
            raise _ProtocolError("short plain message")
        (length,) = struct.unpack("<i", packet[16:20])
        body = packet[20 : 20 + length]
        if conn.handshake is None:
            conn.handshake = handshake.Handshake()
        try:
            query = TLObject.read(BytesIO(body))
        except Exception as exc:  # an unknown constructor, or garbage
            raise _ProtocolError("unreadable plain message") from exc
        self._count(None, [_short_name(query)])
        try:
            answer = conn.handshake.answer(query)
        except handshake.HandshakeError as exc:
            raise _ProtocolError(f"key exchange: {exc}") from exc
        payload = answer.write()
        msg_id = self._msg_ids.next(response=True)
        conn.send_frame(b"\x00" * 8 + struct.pack("<qi", msg_id, len(payload)) + payload)
        if conn.handshake.auth_key is not None:
            key = conn.handshake.auth_key
            self._unbound_keys[_auth_key_id(key)] = key
            conn.handshake = None
        return True

    def _send(
        self, conn: _Connection, body: bytes, *, content_related: bool, response: bool
    ) -> None:
        payload = _encrypt(
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

    def _take_fault(self, account: Account | None, names: list[str], service: bool) -> Fault | None:
        for fault in self._faults:
            if fault._matches(account, names, service):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        fault.cancel()
                return fault
        return None

    def _count(self, account: Account | None, names: list[str]) -> None:
        for name in names:
            self.calls[name] += 1
            if account is not None:
                account.calls[name] += 1
        self._notify()

    def _handle_message(self, conn: _Connection, msg_id: int, body: bytes) -> None:
        if body[:4] == struct.pack("<I", _CONTAINER_ID):
            for inner_id, _seq_no, inner in _split_messages(body[4:]):
                self._handle_message(conn, inner_id, inner)
            return
        try:
            query = TLObject.read(BytesIO(body))
        except Exception:  # an unknown constructor: a newer layer, or garbage
            self._reply(conn, msg_id, _INPUT_CONSTRUCTOR_INVALID)
            return
        if isinstance(query, (raw.types.MsgsAck, raw.types.HttpWait)):
            return
        service = isinstance(query, (raw.functions.Ping, raw.functions.PingDelayDisconnect))
        names = [_short_name(query)]
        while isinstance(query, _WRAPPERS):
            query = query.query
            names.append(_short_name(query))
        account = conn.account
        self._count(account, names)
        fault = self._take_fault(account, names, service)
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

    # ----------------------------------------------------------------- built-in answers

    def _find_user(self, account: Account, input_user: Any) -> Any:
        if isinstance(input_user, raw.types.InputUserSelf):
            return account.raw_user(is_self=True)
        user_id = getattr(input_user, "user_id", None)
        for other in self.accounts:
            if other.user_id == user_id:
                return other.raw_user(is_self=other is account)
        return None

    def _get_full_user(self, account: Account, query: Any) -> Any:
        user = self._find_user(account, query.id)
        if user is None:
            return RpcFailure(400, "USER_ID_INVALID")
        return raw.types.users.UserFull(
            full_user=raw.types.UserFull(
                id=user.id,
                settings=raw.types.PeerSettings(),
                notify_settings=raw.types.PeerNotifySettings(),
                common_chats_count=0,
            ),
            chats=[],
            users=[user],
        )

    def _get_users(self, account: Account, query: Any) -> Any:
        found = [self._find_user(account, input_user) for input_user in query.id]
        return _vector([user for user in found if user is not None])

    def _get_state(self, account: Account, query: Any) -> Any:
        return raw.types.updates.State(
            pts=account.pts, qts=0, date=int(handshake.unix_now()), seq=0, unread_count=0
        )

    def _get_difference(self, account: Account, query: Any) -> Any:
        now = int(handshake.unix_now())
        new = [(m, users) for pts, m, users in account._history if pts > query.pts]
        if not new:
            return raw.types.updates.DifferenceEmpty(date=now, seq=0)
        users = {u.id: u for _m, us in new for u in us}
        return raw.types.updates.Difference(
            new_messages=[m for m, _users in new],
            new_encrypted_messages=[],
            other_updates=[],
            chats=[],
            users=list(users.values()),
            state=self._get_state(account, query),
        )

    def _import_bot_authorization(self, conn: _Connection, query: Any) -> Any:
        for account in self.accounts:
            if account.bot_token is not None and account.bot_token == query.bot_auth_token:
                self._bind(conn.auth_key, account)
                conn.account = account
                self._notify()
                return raw.types.auth.Authorization(user=account.raw_user(is_self=True))
        return RpcFailure(400, "ACCESS_TOKEN_INVALID")

    def _log_out(self, account: Account, query: Any) -> Any:
        account.revoked = True
        return raw.types.auth.LoggedOut()

    def _get_nearest_dc(self, account: Account, query: Any) -> Any:
        return raw.types.NearestDc(country="ZZ", this_dc=self.dc_id, nearest_dc=self.dc_id)

    def _get_config(self, account: Account, query: Any) -> Any:
        now = int(handshake.unix_now())
        return raw.types.Config(
            date=now,
            expires=now + 3600,
            test_mode=account.test_mode,
            this_dc=self.dc_id,
            dc_options=[raw.types.DcOption(id=self.dc_id, ip_address=self.host, port=self.port)],
            dc_txt_domain_name="localhost",
            chat_size_max=200,
            megagroup_size_max=200000,
            forwarded_count_max=100,
            online_update_period_ms=210000,
            offline_blur_timeout_ms=5000,
            offline_idle_timeout_ms=30000,
            online_cloud_timeout_ms=300000,
            notify_cloud_delay_ms=30000,
            notify_default_delay_ms=1500,
            push_chat_period_ms=60000,
            push_chat_limit=2,
            edit_time_limit=172800,
            revoke_time_limit=2147483647,
            revoke_pm_time_limit=2147483647,
            rating_e_decay=2419200,
            stickers_recent_limit=200,
            channels_read_media_period=604800,
            call_receive_timeout_ms=20000,
            call_ring_timeout_ms=90000,
            call_connect_timeout_ms=30000,
            call_packet_timeout_ms=10000,
            me_url_prefix="https://t.me/",
            caption_length_max=1024,
            message_length_max=4096,
            webfile_dc_id=self.dc_id,
        )


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
