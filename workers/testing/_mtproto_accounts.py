"""The users the loopback MTProto server knows, with their keys and updates (test-only).

An :class:`Account` is a user with a pre-shared auth key, handed to a Pyrogram client
through a session string (:func:`session_string`, Pyrogram's v2 format). It keeps the
account's own update sequence (``pts``) and message history, which pushed messages
advance and ``updates.GetDifference`` reads.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import struct
from collections import Counter
from typing import Any

import attrs
import pyrogram.raw

from ._mtproto_codec import key_id_of, unix_now

# ``pyrogram.raw`` is generated code whose modules do not re-export their names, so under
# ``mypy --strict`` (no implicit re-export) every ``raw.types.X`` would be an error: use
# it untyped.
raw: Any = pyrogram.raw

__all__ = ["Account", "access_hash", "generate_auth_key", "new_user_id", "session_string"]


def generate_auth_key() -> bytes:
    """Return a random 2048-bit MTProto auth key.

    Returns:
        256 random bytes.
    """
    return os.urandom(256)


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


_user_ids = itertools.count(1_000_001)


def new_user_id() -> int:
    """A user id no account or sender had yet in this process."""
    return next(_user_ids)


def access_hash(user_id: int) -> int:
    """The ``access_hash`` Telegram would give this user (stable per id)."""
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
        return key_id_of(self.auth_key)

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
            access_hash=access_hash(self.user_id),
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone,
            bot_info_version=1 if self.is_bot else None,
        )

    def _record_message(
        self, text: str, *, sender: Account | int | None, sender_name: str, short: bool
    ) -> tuple[int, Any]:
        """Keep a private text message for ``updates.GetDifference``, advancing ``pts``.

        Returns:
            The message id, and the update that delivers it (``UpdateShortMessage``
            when ``short``, else ``Updates([UpdateNewMessage])``).
        """
        if isinstance(sender, Account):
            sender_user = sender.raw_user()
        else:
            sender_id = new_user_id() if sender is None else sender
            sender_user = raw.types.User(
                id=sender_id, access_hash=access_hash(sender_id), first_name=sender_name
            )
        now = int(unix_now())
        self._pts += 1
        self._message_id += 1
        message = raw.types.Message(
            id=self._message_id,
            peer_id=raw.types.PeerUser(user_id=sender_user.id),
            from_id=raw.types.PeerUser(user_id=sender_user.id),
            date=now,
            message=text,
        )
        users = [sender_user, self.raw_user(is_self=True)]
        self._history.append((self._pts, message, users))
        update: Any
        if short:
            update = raw.types.UpdateShortMessage(
                id=message.id,
                user_id=sender_user.id,
                message=text,
                pts=self._pts,
                pts_count=1,
                date=now,
            )
        else:
            update = raw.types.Updates(
                updates=[raw.types.UpdateNewMessage(message=message, pts=self._pts, pts_count=1)],
                users=users,
                chats=[],
                date=now,
                seq=0,
            )
        return int(message.id), update
