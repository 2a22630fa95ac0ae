"""Worker actors for supervision trees: the actor base, typed failures, classification.

A worker has ``init`` (connect), ``run`` (its loop) and ``terminate``
(cleanup within its grace), a mailbox reached by name through a registry,
optional liveness probes, and exits with a typed failure its supervisor acts on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specs._surface import publish as _publish
from supervisor import MissingExtra as _MissingExtra

from ._actor import Context as Context
from ._actor import Worker as Worker
from ._classify import DEFAULT as DEFAULT
from ._classify import STATUS_FAILURES as STATUS_FAILURES
from ._classify import Classifier as Classifier
from ._classify import Rule as Rule
from ._classify import httpx_rule as httpx_rule
from ._classify import network_rule as network_rule
from ._classify import pyrogram_client_rule as pyrogram_client_rule
from ._classify import pyrogram_rule as pyrogram_rule
from ._classify import status_failure as status_failure
from ._classify import websocket_rule as websocket_rule
from ._exceptions import CalleeExited as CalleeExited
from ._exceptions import CallTimeout as CallTimeout
from ._exceptions import NameTaken as NameTaken
from ._exceptions import NotRunning as NotRunning
from ._failures import FAILURE_KINDS as FAILURE_KINDS
from ._failures import AuthRevoked as AuthRevoked
from ._failures import Conflict as Conflict
from ._failures import ConnectionLost as ConnectionLost
from ._failures import Crashed as Crashed
from ._failures import Failure as Failure
from ._failures import FloodWait as FloodWait
from ._failures import HeartbeatTimeout as HeartbeatTimeout
from ._failures import PoolExhausted as PoolExhausted
from ._failures import ProxyFailed as ProxyFailed
from ._failures import RateLimited as RateLimited
from ._failures import ServerError as ServerError
from ._failures import UnexpectedStop as UnexpectedStop
from ._mailbox import Mailbox as Mailbox
from ._mailbox import Registry as Registry
from ._mailbox import registry as registry
from ._polling import ApiError as ApiError
from ._polling import FileOffsetStore as FileOffsetStore
from ._polling import HandlerFailure as HandlerFailure
from ._polling import MemoryOffsetStore as MemoryOffsetStore
from ._polling import OffsetStore as OffsetStore
from ._polling import OnHandlerFailure as OnHandlerFailure
from ._polling import OnStaleUpdate as OnStaleUpdate
from ._polling import PollingConfig as PollingConfig
from ._polling import PollingConfigError as PollingConfigError
from ._polling import PollingLoopWorker as PollingLoopWorker
from ._polling import PollingStats as PollingStats
from ._polling import SaveOffset as SaveOffset
from ._polling import StaleUpdates as StaleUpdates
from ._polling import Update as Update
from ._polling import UpdateFailed as UpdateFailed
from ._polling import UpdateHandler as UpdateHandler
from ._redact import DEFAULT_SECRET_NAMES as DEFAULT_SECRET_NAMES
from ._redact import REDACTED as REDACTED
from ._redact import REDACTED_LOGGERS as REDACTED_LOGGERS
from ._redact import SecretFilter as SecretFilter
from ._redact import install_log_redaction as install_log_redaction
from ._redact import redact as redact
from ._redact import redact_exception as redact_exception
from ._redact import register_secret as register_secret
from ._redact import register_secret_names as register_secret_names
from ._websocket import RECONNECT_BACKOFF as RECONNECT_BACKOFF
from ._websocket import WebSocketConfig as WebSocketConfig
from ._websocket import WebSocketConfigError as WebSocketConfigError
from ._websocket import WebSocketMessage as WebSocketMessage
from ._websocket import WebSocketSession as WebSocketSession
from ._websocket import WebSocketSessionWorker as WebSocketSessionWorker

if TYPE_CHECKING:
    from ._pyrogram import ACCOUNT_BACKOFF as ACCOUNT_BACKOFF
    from ._pyrogram import PyrogramClientWorker as PyrogramClientWorker
    from ._pyrogram import PyrogramConfig as PyrogramConfig
    from ._pyrogram import PyrogramConfigError as PyrogramConfigError
    from ._pyrogram import PyrogramUpdate as PyrogramUpdate
    from ._pyrogram import RequestRejected as RequestRejected
    from ._pyrogram import UpdatesStalled as UpdatesStalled
    from ._pyrogram import account_pool as account_pool

# Pyrogram's names load on first use: importing pyrogram takes most of a second and
# trio-asyncio patches asyncio for the whole process, which a program that only
# wants the WebSocket or polling worker should not pay for; and they come from the
# [pyrogram] extra, which such a program need not install.
_LAZY = frozenset(
    {
        "ACCOUNT_BACKOFF",
        "PyrogramClientWorker",
        "PyrogramConfig",
        "PyrogramConfigError",
        "PyrogramUpdate",
        "RequestRejected",
        "UpdatesStalled",
        "account_pool",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        with _MissingExtra.guard("pyrogram", f"{__name__}.{name}"):
            from . import _pyrogram
        loaded = {lazy: getattr(_pyrogram, lazy) for lazy in _LAZY}
        _publish(__name__, loaded)
        globals().update(loaded)
        return loaded[name]
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "ACCOUNT_BACKOFF",
    "ApiError",
    "AuthRevoked",
    "CallTimeout",
    "CalleeExited",
    "Classifier",
    "Conflict",
    "ConnectionLost",
    "Context",
    "Crashed",
    "DEFAULT",
    "DEFAULT_SECRET_NAMES",
    "FAILURE_KINDS",
    "Failure",
    "FileOffsetStore",
    "FloodWait",
    "HandlerFailure",
    "HeartbeatTimeout",
    "Mailbox",
    "MemoryOffsetStore",
    "NameTaken",
    "NotRunning",
    "OffsetStore",
    "OnHandlerFailure",
    "OnStaleUpdate",
    "PollingConfig",
    "PollingConfigError",
    "PollingLoopWorker",
    "PollingStats",
    "PoolExhausted",
    "ProxyFailed",
    "PyrogramClientWorker",
    "PyrogramConfig",
    "PyrogramConfigError",
    "PyrogramUpdate",
    "RECONNECT_BACKOFF",
    "REDACTED",
    "REDACTED_LOGGERS",
    "RateLimited",
    "Registry",
    "RequestRejected",
    "Rule",
    "STATUS_FAILURES",
    "SaveOffset",
    "SecretFilter",
    "ServerError",
    "StaleUpdates",
    "UnexpectedStop",
    "Update",
    "UpdateFailed",
    "UpdateHandler",
    "UpdatesStalled",
    "WebSocketConfig",
    "WebSocketConfigError",
    "WebSocketMessage",
    "WebSocketSession",
    "WebSocketSessionWorker",
    "Worker",
    "account_pool",
    "httpx_rule",
    "install_log_redaction",
    "network_rule",
    "pyrogram_client_rule",
    "pyrogram_rule",
    "redact",
    "redact_exception",
    "register_secret",
    "register_secret_names",
    "registry",
    "status_failure",
    "websocket_rule",
]

_publish(__name__, globals())
