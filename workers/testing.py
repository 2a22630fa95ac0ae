"""Loopback servers for testing your own worker trees without the real services.

``open_mtproto_server`` runs an MTProto server that real Pyrogram clients talk
to (pushed updates, injected RPC errors, dropped or black-holed links).
``open_botapi_server`` / ``open_connect_proxy``: a loopback Bot API (long polls,
Telegram errors, faults, TLS) and a CONNECT/SOCKS5 proxy that can die.
``open_websocket_test_server`` / ``open_tcp_relay``: trio-websocket's server with
chosen close codes, drops, rejections, unanswered upgrades and restarts, and a TCP
relay that turns into a black hole.
"""

from __future__ import annotations

from specs._surface import publish as _publish

from ._botapi_server import LOOPBACK_CA_PEM as LOOPBACK_CA_PEM
from ._botapi_server import BotApiFault as BotApiFault
from ._botapi_server import BotApiFaultAction as BotApiFaultAction
from ._botapi_server import BotApiRequest as BotApiRequest
from ._botapi_server import BotApiResponder as BotApiResponder
from ._botapi_server import BotApiServer as BotApiServer
from ._botapi_server import ConnectProxy as ConnectProxy
from ._botapi_server import loopback_client_ssl_context as loopback_client_ssl_context
from ._botapi_server import open_botapi_server as open_botapi_server
from ._botapi_server import open_connect_proxy as open_connect_proxy
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
from ._ws_servers import TcpRelay as TcpRelay
from ._ws_servers import WebSocketServerBehaviour as WebSocketServerBehaviour
from ._ws_servers import WebSocketServerConnection as WebSocketServerConnection
from ._ws_servers import WebSocketTestServer as WebSocketTestServer
from ._ws_servers import open_tcp_relay as open_tcp_relay
from ._ws_servers import open_websocket_test_server as open_websocket_test_server

__all__ = [
    "AUTH_KEY_DUPLICATED",
    "AUTH_KEY_UNREGISTERED",
    "Account",
    "BotApiFault",
    "BotApiFaultAction",
    "BotApiRequest",
    "BotApiResponder",
    "BotApiServer",
    "ConnectProxy",
    "Fault",
    "FaultAction",
    "LOOPBACK_CA_PEM",
    "METHOD_INVALID",
    "MTProtoServer",
    "RPC_CALL_FAIL",
    "RpcFailure",
    "TcpRelay",
    "WebSocketServerBehaviour",
    "WebSocketServerConnection",
    "WebSocketTestServer",
    "generate_auth_key",
    "loopback_client_ssl_context",
    "open_botapi_server",
    "open_connect_proxy",
    "open_mtproto_server",
    "open_tcp_relay",
    "open_websocket_test_server",
    "redirect_pyrogram",
    "session_string",
]

_publish(__name__, globals())
