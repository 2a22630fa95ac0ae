"""MTProto 2.0 on the wire, server side: framing, encryption, message ids (test-only).

What the loopback MTProto server reads and writes below the TL objects:

- transports: TCP abridged (Pyrogram's default), intermediate and padded
  intermediate framing, detected from the first bytes (:class:`Framing`);
- encryption: Pyrogram's own ``pyrogram.crypto`` (``mtproto.kdf``, AES-256-IGE
  through tgcrypto or Pyrogram's fallback) in the server direction
  (:func:`decrypt`, :func:`encrypt`), keyed by the auth key's id (:func:`key_id_of`);
- message ids (:class:`MsgIds`) and ``msg_container`` bodies (:func:`split_messages`);
- names of ``pyrogram.raw`` methods (:func:`method_name`), as the server counts calls.

:func:`unix_now` is the one place the loopback MTProto code reads the wall clock:
message ids, dates and the key exchange's ``server_time`` carry it as protocol data.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import time
from io import BytesIO
from typing import Any, Final, TypeAlias

import trio
from pyrogram.crypto import aes, mtproto

__all__ = [
    "BOOL_TRUE",
    "CONTAINER_ID",
    "TRANSPORT_AUTH_KEY_NOT_FOUND",
    "Encoded",
    "EndOfStream",
    "Framing",
    "MethodSpec",
    "MsgIds",
    "ProtocolError",
    "Reader",
    "decrypt",
    "encrypt",
    "key_id_of",
    "method_key",
    "method_name",
    "short_name",
    "split_messages",
    "unix_now",
    "vector",
]


def unix_now() -> float:
    """Seconds since the epoch, as MTProto's message ids and dates carry them.

    Wall-clock time as protocol data (Telegram checks message ids against its
    own clock), never for timing: timeouts and delays go through trio.
    """
    return time.time()


MethodSpec: TypeAlias = "str | type[Any]"
"""A method: Pyrogram's short name (``"users.GetFullUser"``, ``"Ping"``), the TL name
(``"users.getFullUser"``, case-insensitive) or the ``pyrogram.raw.functions`` class."""


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


def method_key(method: MethodSpec) -> str:
    return method_name(method).lower()


def short_name(obj: Any) -> str:
    """Pyrogram's short name of a TL object's type (``"users.GetFullUser"``)."""
    qualname: str = type(obj).QUALNAME
    return qualname.split(".", 1)[1] if "." in qualname else qualname


def key_id_of(auth_key: bytes) -> bytes:
    """The 8-byte id of an auth key (the low 64 bits of its SHA-1), sent with every packet."""
    return hashlib.sha1(auth_key).digest()[-8:]


class ProtocolError(Exception):
    """The peer broke the protocol; the connection is closed."""


class EndOfStream(Exception):
    """The peer closed the connection."""


_MAX_FRAME: Final = 16 * 1024 * 1024
CONTAINER_ID: Final = 0x73F1F8DC
TRANSPORT_AUTH_KEY_NOT_FOUND: Final = -404


class Encoded:
    """Pre-serialised TL bytes with the ``write()`` that ``pyrogram.raw`` expects."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write(self, *args: Any) -> bytes:
        return self.data


BOOL_TRUE: Final = Encoded(struct.pack("<I", 0x997275B5))


def vector(items: list[Any]) -> Encoded:
    data = struct.pack("<Ii", 0x1CB5C415, len(items)) + b"".join(i.write() for i in items)
    return Encoded(data)


class Reader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EndOfStream
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class Framing(enum.Enum):
    ABRIDGED = "abridged"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded-intermediate"

    @classmethod
    async def detect(cls, reader: Reader) -> Framing:
        first = await reader.read_exactly(1)
        if first == b"\xef":
            return cls.ABRIDGED
        rest = await reader.read_exactly(3)
        if first + rest == b"\xee\xee\xee\xee":
            return cls.INTERMEDIATE
        if first + rest == b"\xdd\xdd\xdd\xdd":
            return cls.PADDED_INTERMEDIATE
        raise ProtocolError(f"unsupported transport: {(first + rest).hex()}")

    async def read_frame(self, reader: Reader) -> bytes:
        if self is Framing.ABRIDGED:
            n = (await reader.read_exactly(1))[0] & 0x7F  # the high bit asks for a quick ack
            if n == 0x7F:
                n = int.from_bytes(await reader.read_exactly(3), "little")
            length = n * 4
        else:
            length = int.from_bytes(await reader.read_exactly(4), "little") & 0x7FFFFFFF
        if length > _MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes")
        return await reader.read_exactly(length)

    def frame(self, payload: bytes) -> bytes:
        if self is Framing.ABRIDGED:
            n = len(payload) // 4
            header = bytes([n]) if n < 0x7F else b"\x7f" + n.to_bytes(3, "little")
            return header + payload
        if self is Framing.PADDED_INTERMEDIATE:
            payload += os.urandom(int.from_bytes(os.urandom(1), "little") % 16)
        return len(payload).to_bytes(4, "little") + payload


class MsgIds:
    """Server message ids: increasing, ``1 mod 4`` for answers, ``3 mod 4`` otherwise."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, *, response: bool) -> int:
        candidate = max(int(unix_now() * 2**32), self._last + 1)
        candidate += (1 if response else 3) - candidate % 4
        if candidate <= self._last:
            candidate += 4
        self._last = candidate
        return candidate


def split_messages(body: bytes) -> list[tuple[int, int, bytes]]:
    """Split a ``msg_container`` body (after its constructor id) into messages."""
    buffer = BytesIO(body)
    if len(body) < 4:
        raise ProtocolError("truncated container")
    (count,) = struct.unpack("<i", buffer.read(4))
    messages = []
    for _ in range(count):
        header = buffer.read(16)
        if len(header) != 16:
            raise ProtocolError("truncated container")
        msg_id, seq_no, length = struct.unpack("<qii", header)
        inner = buffer.read(length)
        if len(inner) != length:
            raise ProtocolError("truncated container")
        messages.append((msg_id, seq_no, inner))
    return messages


def decrypt(auth_key: bytes, packet: bytes) -> tuple[bytes, int, int, bytes]:
    """Decrypt a client packet: ``(session_id, msg_id, seq_no, body)``."""
    msg_key = packet[8:24]
    ciphertext = packet[24:]
    ciphertext = ciphertext[: len(ciphertext) - len(ciphertext) % 16]
    if not ciphertext:
        raise ProtocolError("empty encrypted message")
    aes_key, aes_iv = mtproto.kdf(auth_key, msg_key, True)
    data: bytes = aes.ige256_decrypt(ciphertext, aes_key, aes_iv)
    if hashlib.sha256(auth_key[88:120] + data).digest()[8:24] != msg_key:
        raise ProtocolError("msg_key mismatch")
    session_id = data[8:16]
    msg_id, seq_no, length = struct.unpack("<qii", data[16:32])
    if not 0 <= length <= len(data) - 32:
        raise ProtocolError("bad message length")
    return session_id, msg_id, seq_no, data[32 : 32 + length]


def encrypt(
    auth_key: bytes, salt: bytes, session_id: bytes, msg_id: int, seq_no: int, body: bytes
) -> bytes:
    data = salt + session_id + struct.pack("<qii", msg_id, seq_no, len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    msg_key = hashlib.sha256(auth_key[96:128] + data + padding).digest()[8:24]
    aes_key, aes_iv = mtproto.kdf(auth_key, msg_key, False)
    ciphertext: bytes = aes.ige256_encrypt(data + padding, aes_key, aes_iv)
    return key_id_of(auth_key) + msg_key + ciphertext
