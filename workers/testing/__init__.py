"""Loopback servers for testing your own worker trees without the real services.

Every server runs on 127.0.0.1 inside your ``trio.run``, and real clients connect to it:

- ``open_botapi_server``: a Bot API (long polls, Telegram's errors, injected faults,
  optional TLS with the loopback test CA, see ``loopback_client_ssl_context``);
- ``open_connect_proxy``: a CONNECT/SOCKS5 proxy that can refuse tunnels, die and
  come back;
- ``open_websocket_test_server``: trio-websocket's server with chosen close codes,
  drops, rejections, unanswered upgrades and restarts;
- ``open_tcp_relay``: a TCP relay in front of any server that turns into a black hole;
- ``open_mtproto_server``: an MTProto server that real Pyrogram clients talk to
  (pushed updates, injected RPC errors, dropped or black-holed links). Its names
  (``MTProtoServer``, ``Account``, ``RpcFailure``, ...) load on first use and need
  Pyrogram (the ``[pyrogram]`` extra); the other servers do not.

The modules behind this package, one per protocol: ``_listener`` (the restartable
listener the servers share), ``_tls`` (test CA and TLS contexts), ``_botapi``,
``_proxies``, ``_ws_server``, ``_relay``, and for MTProto ``_mtproto_codec`` (wire
format), ``_mtproto_handshake`` (auth-key exchange), ``_mtproto_accounts``,
``_mtproto_faults``, ``_mtproto_answers`` (built-in answers), ``_pyrogram_patch``
(pointing Pyrogram at the server) and ``_mtproto_server``. Nothing in the runtime
imports this package, and it uses only the runtime's public names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from specs._surface import publish as _publish
from supervisor import MissingExtra as _MissingExtra

from ._botapi import BotApiFault as BotApiFault
from ._botapi import BotApiFaultAction as BotApiFaultAction
from ._botapi import BotApiRequest as BotApiRequest
from ._botapi import BotApiResponder as BotApiResponder
from ._botapi import BotApiServer as BotApiServer
from ._botapi import open_botapi_server as open_botapi_server
from ._proxies import ConnectProxy as ConnectProxy
from ._proxies import open_connect_proxy as open_connect_proxy
from ._relay import TcpRelay as TcpRelay
from ._relay import open_tcp_relay as open_tcp_relay
from ._tls import LOOPBACK_CA_PEM as LOOPBACK_CA_PEM
from ._tls import loopback_client_ssl_context as loopback_client_ssl_context
from ._ws_server import WebSocketServerBehaviour as WebSocketServerBehaviour
from ._ws_server import WebSocketServerConnection as WebSocketServerConnection
from ._ws_server import WebSocketTestServer as WebSocketTestServer
from ._ws_server import open_websocket_test_server as open_websocket_test_server

if TYPE_CHECKING:
    from ._mtproto_accounts import Account as Account
    from ._mtproto_accounts import generate_auth_key as generate_auth_key
    from ._mtproto_accounts import session_string as session_string
    from ._mtproto_faults import AUTH_KEY_DUPLICATED as AUTH_KEY_DUPLICATED
    from ._mtproto_faults import AUTH_KEY_UNREGISTERED as AUTH_KEY_UNREGISTERED
    from ._mtproto_faults import METHOD_INVALID as METHOD_INVALID
    from ._mtproto_faults import RPC_CALL_FAIL as RPC_CALL_FAIL
    from ._mtproto_faults import Fault as Fault
    from ._mtproto_faults import FaultAction as FaultAction
    from ._mtproto_faults import RpcFailure as RpcFailure
    from ._mtproto_server import MTProtoServer as MTProtoServer
    from ._mtproto_server import open_mtproto_server as open_mtproto_server
    from ._pyrogram_patch import redirect_pyrogram as redirect_pyrogram

# The MTProto server's names load on first use, by the module that holds each: the
# server stands on Pyrogram (its TL types and crypto), which takes most of a second to
# import and comes from the [pyrogram] extra, which a user of the other servers need
# not install.
_LAZY: Final = {
    "AUTH_KEY_DUPLICATED": "_mtproto_faults",
    "AUTH_KEY_UNREGISTERED": "_mtproto_faults",
    "Account": "_mtproto_accounts",
    "Fault": "_mtproto_faults",
    "FaultAction": "_mtproto_faults",
    "METHOD_INVALID": "_mtproto_faults",
    "MTProtoServer": "_mtproto_server",
    "RPC_CALL_FAIL": "_mtproto_faults",
    "RpcFailure": "_mtproto_faults",
    "generate_auth_key": "_mtproto_accounts",
    "open_mtproto_server": "_mtproto_server",
    "redirect_pyrogram": "_pyrogram_patch",
    "session_string": "_mtproto_accounts",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    with _MissingExtra.guard("pyrogram", f"{__name__}.{name}"):
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    _publish(__name__, {name: value})
    globals()[name] = value
    return value


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
