"""Loopback servers for testing your own worker trees without the real services.

``open_mtproto_server`` runs an MTProto server that real Pyrogram clients talk
to (pushed updates, injected RPC errors, dropped or black-holed links).
"""

from __future__ import annotations

from ._mtproto_server import AUTH_KEY_DUPLICATED as AUTH_KEY_DUPLICATED
from ._mtproto_server import AUTH_KEY_UNREGISTERED as AUTH_KEY_UNREGISTERED
from ._mtproto_server import METHOD_INVALID as METHOD_INVALID
from ._mtproto_server import RPC_CALL_FAIL as RPC_CALL_FAIL
from ._mtproto_server import Account as Account
from ._mtproto_server import Fault as Fault
from ._mtproto_server import FaultAction as FaultAction
from ._mtproto_server import MTProtoServer as MTProtoServer
from ._mtproto_server import RpcFailure as RpcFailure
from ._mtproto_server import generate_auth_key as generate_auth_key
from ._mtproto_server import open_mtproto_server as open_mtproto_server
from ._mtproto_server import redirect_pyrogram as redirect_pyrogram
from ._mtproto_server import session_string as session_string

__all__ = [
    "AUTH_KEY_DUPLICATED",
    "AUTH_KEY_UNREGISTERED",
    "Account",
    "Fault",
    "FaultAction",
    "METHOD_INVALID",
    "MTProtoServer",
    "RPC_CALL_FAIL",
    "RpcFailure",
    "generate_auth_key",
    "open_mtproto_server",
    "redirect_pyrogram",
    "session_string",
]
