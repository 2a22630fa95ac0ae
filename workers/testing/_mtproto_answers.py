"""The loopback MTProto server's own answers to what a Pyrogram client asks (test-only).

A connecting client calls ``help.GetConfig``, ``updates.GetState`` and friends on its
own; :class:`BuiltinAnswers` answers them as Telegram would, from the server's
accounts. A test replaces any of them with :meth:`MTProtoServer.set_responder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import pyrogram.raw

from ._mtproto_codec import BOOL_TRUE, unix_now, vector
from ._mtproto_faults import RpcFailure

if TYPE_CHECKING:
    from ._mtproto_accounts import Account
    from ._mtproto_server import MTProtoServer

# ``pyrogram.raw`` is generated code whose modules do not re-export their names, so under
# ``mypy --strict`` (no implicit re-export) every ``raw.types.X`` would be an error: use
# it untyped.
raw: Any = pyrogram.raw

__all__ = ["BuiltinAnswers", "Responder"]

Responder: TypeAlias = "Callable[[Account, Any], Any]"
"""Answers one call: ``(account, query) -> TL object | RpcFailure``."""


class BuiltinAnswers:
    """What the server answers by itself, by lower-cased method name (see :meth:`table`)."""

    def __init__(self, server: MTProtoServer) -> None:
        """Answer from ``server``'s accounts and address."""
        self._server = server

    def table(self) -> dict[str, Responder]:
        """The built-in responders, by lower-cased method name."""
        return {
            "help.getconfig": self.get_config,
            "help.getnearestdc": self.get_nearest_dc,
            "updates.getstate": self.get_state,
            "updates.getdifference": self.get_difference,
            "users.getusers": self.get_users,
            "users.getfulluser": self.get_full_user,
            "account.updatestatus": self.update_status,
            "auth.logout": self.log_out,
        }

    def find_user(self, account: Account, input_user: Any) -> Any:
        """The ``raw.types.User`` an ``InputUser`` names, as ``account`` sees it, or None."""
        if isinstance(input_user, raw.types.InputUserSelf):
            return account.raw_user(is_self=True)
        user_id = getattr(input_user, "user_id", None)
        for other in self._server.accounts:
            if other.user_id == user_id:
                return other.raw_user(is_self=other is account)
        return None

    def get_full_user(self, account: Account, query: Any) -> Any:
        """``users.GetFullUser``: the user's ``UserFull``, or 400 ``USER_ID_INVALID``."""
        user = self.find_user(account, query.id)
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

    def get_users(self, account: Account, query: Any) -> Any:
        """``users.GetUsers``: the users found, in order, the unknown ones left out."""
        found = [self.find_user(account, input_user) for input_user in query.id]
        return vector([user for user in found if user is not None])

    def get_state(self, account: Account, query: Any) -> Any:
        """``updates.GetState``: the account's ``pts`` now."""
        return raw.types.updates.State(
            pts=account.pts, qts=0, date=int(unix_now()), seq=0, unread_count=0
        )

    def get_difference(self, account: Account, query: Any) -> Any:
        """``updates.GetDifference``: the messages pushed since the client's ``pts``."""
        now = int(unix_now())
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
            state=self.get_state(account, query),
        )

    def log_out(self, account: Account, query: Any) -> Any:
        """``auth.LogOut``: the session is revoked."""
        account.revoked = True
        return raw.types.auth.LoggedOut()

    def get_nearest_dc(self, account: Account, query: Any) -> Any:
        """``help.GetNearestDc``: this server's data centre."""
        return raw.types.NearestDc(
            country="ZZ", this_dc=self._server.dc_id, nearest_dc=self._server.dc_id
        )

    def get_config(self, account: Account, query: Any) -> Any:
        """``help.GetConfig``: one data centre, this server, and Telegram's usual limits."""
        server = self._server
        now = int(unix_now())
        return raw.types.Config(
            date=now,
            expires=now + 3600,
            test_mode=account.test_mode,
            this_dc=self._server.dc_id,
            dc_options=[
                raw.types.DcOption(
                    id=self._server.dc_id, ip_address=self._server.host, port=self._server.port
                )
            ],
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
            webfile_dc_id=server.dc_id,
        )

    def update_status(self, account: Account, query: Any) -> Any:
        """``account.UpdateStatus``: ``true``."""
        return BOOL_TRUE
