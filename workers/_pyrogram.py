"""The Pyrogram client worker: one Telegram account (MTProto), supervised, inside trio.

Pyrogram is asyncio-only. Each incarnation of :class:`PyrogramClientWorker` runs its
own trio-asyncio loop (``workers._aio_bridge.open_bridged_loop``: trio-asyncio plus
the executor bridge Pyrogram's thread pools need) in a host task, builds the
``Client`` inside it, and leaves it when the incarnation ends: that cancels every
task Pyrogram left behind (its endless reconnect loop included) and closes every
socket it opened, so nothing of Pyrogram outlives the incarnation.

One incarnation is one session:

- ``init`` builds the client from a session string, a session file (``workdir``)
  or a bot token, and within ``connect_timeout`` connects (Pyrogram's ``connect()``
  never returns while the data centre is unreachable: the deadline ends it), logs
  the bot in if needed, calls ``get_me()`` (a revoked session is only seen on the
  first authorised call), ``updates.GetState`` when updates are wanted, and
  ``initialize()`` (Pyrogram's dispatcher, which consumes what the server pushes).
  The client runs with ``sleep_threshold=0``: Pyrogram raises every FloodWait
  instead of sleeping on it, so the wait reaches the supervisor.
- a heartbeat sends ``invoke(Ping, retries=0, timeout=ping_timeout)`` every
  ``ping_interval`` seconds: a black-holed link is found within
  ``ping_interval + ping_timeout`` (Pyrogram's own read timeout takes 10 s, then it
  reconnects by itself, forever);
- when Pyrogram reports its session went down (a dropped link: it reconnects at
  once by itself, and while the data centre refuses, every second), the heartbeat
  leaves the session alone until Pyrogram says it is started again (which it does
  only after the new connection answered its own ``Ping``), then goes back to its
  rhythm; a session not back within ``reconnect_timeout`` of the report ends the
  incarnation. A link Pyrogram restores is no restart: no new loop, no new client,
  no backoff. A ping that finds the connection broken before Pyrogram noticed
  counts as such a report, and one ping proves the session back;
- an optional watchdog ends the incarnation after ``no_updates_timeout`` seconds
  without an update (a session the server stopped pushing updates to);
- updates reach the application through Pyrogram's handlers, as
  :class:`PyrogramUpdate` records on a trio memory channel;
- an error nobody awaited in one of Pyrogram's background tasks (a reconnect that
  met ``AUTH_KEY_DUPLICATED``) ends the incarnation typed; asyncio would only log
  it, trio-asyncio would raise it untyped out of the loop.

Failures are typed by ``workers.DEFAULT`` (:func:`~workers.pyrogram_rule` and
:func:`~workers.pyrogram_client_rule`): FloodWait (and the other 420s, also those
Pyrogram has no class for, ``FLOOD_PREMIUM_WAIT_5``) → :class:`~workers.FloodWait`
(the supervisor waits its seconds), 401 family and 406 ``AUTH_KEY_DUPLICATED`` →
:class:`~workers.AuthRevoked` (a TRANSIENT worker stays down, or logs in again through
``relogin``), 5xx → :class:`~workers.ServerError`, no session within
``connect_timeout`` or lost and not back within ``reconnect_timeout`` →
:class:`~workers.ConnectionLost` (:class:`~workers.ProxyFailed` when the proxy fails a
tunnel check then: the next incarnation takes the next of ``proxies``), an unanswered
ping → :class:`~workers.HeartbeatTimeout`. Pyrogram's ``ConnectionError`` for misuse
("Client is already connected") is a bug (:class:`~workers.Crashed`), not a lost
connection.

Many accounts: :func:`account_pool` builds a dynamic supervisor with one small
supervisor per account (``start_child(config)``), so each account has its own
backoff and its own restart intensity: one account's FloodWait, ban or crash loop
never restarts, delays or escalates another.

Working directory: Pyrogram appends unknown RPC errors to ``unknown_errors.txt`` in
the process's *current* directory, whatever ``workdir`` says. The worker does not
``chdir`` (it is process-wide, and racy with other workers): run the program from a
data directory (a systemd ``WorkingDirectory=``), and in tests change into a temporary
directory (``monkeypatch.chdir(tmp_path)``). ``workdir`` holds the session file
(``<name>.session``) and Pyrogram's downloads.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import inspect
import itertools
import logging
import math
import os
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, NoReturn, ParamSpec, TypeAlias, TypeVar

import attrs
import pyrogram
import trio
import trio_asyncio  # type: ignore[import-untyped, unused-ignore]
from pyrogram.client import Client
from pyrogram.handlers.disconnect_handler import DisconnectHandler
from pyrogram.handlers.handler import Handler
from pyrogram.handlers.message_handler import MessageHandler
from pyrogram.handlers.raw_update_handler import RawUpdateHandler
from pyrogram.storage.sqlite_storage import SQLiteStorage

import supervisor
from specs import (
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD,
    INFINITY,
    SUPERVISOR,
    Backoff,
    ChildSpec,
    DynamicSupervisorSpec,
    FailurePolicy,
    Restart,
    ShutdownValue,
    SupervisorSpec,
)

from ._actor import Context, Worker, refused_on_restart
from ._aio_bridge import aio_call, open_bridged_loop
from ._classify import DEFAULT, Classifier
from ._exceptions import NotRunning
from ._failures import (
    AuthRevoked,
    ConnectionLost,
    Crashed,
    Failure,
    FloodWait,
    HeartbeatTimeout,
    ProxyFailed,
)
from ._mailbox import Registry
from ._redact import REDACTED, install_log_redaction, redact_exception, register_secret
from ._tunnel import tunnel_failure

# ``pyrogram.raw`` is generated code without re-exports: use it untyped (as the server does).
raw: Any = pyrogram.raw

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

#: A mailbox request: a ``Client`` coroutine method's name, ``(name, *args)``, or a
#: function of the client returning an awaitable (``lambda c: c.send_message(...)``).
PyrogramRequest: TypeAlias = "str | tuple[Any, ...] | Callable[[Client], Awaitable[Any]]"

#: The restart backoff recommended for accounts: the first reconnect after 0.5 s plus
#: up to 1 s of jitter (a thousand accounts of one restarted data centre spread out),
#: doubling up to 30 s, forgotten after 60 s of healthy session.
ACCOUNT_BACKOFF: Final = Backoff(
    wait_initial=0.5, wait_max=30.0, wait_jitter=1.0, wait_exp_base=2.0, reset_after=60.0
)

# the trio deadline around a heartbeat ping exceeds Pyrogram's own timeout a little, so
# that on a silent link Pyrogram's timeout (which also forgets the request) fires first
_PING_MARGIN: Final = 0.25
# a ping that found the connection broken while Pyrogram still called the session
# started is tried again after this, not at once: Pyrogram is about to restart it
_RETRY_PING_AFTER: Final = 0.5
# calls an application's request may fail the incarnation with: the account's own
# state, which every later call would meet too; anything else is the request's
_ACCOUNT_FAILURES: Final = (FloodWait, AuthRevoked)


# --------------------------------------------------------------------------- configuration


class PyrogramConfigError(ValueError, TypeError):
    """A :class:`PyrogramConfig` field is invalid (a wrong type or a wrong value).

    Both a ``ValueError`` and a ``TypeError``, so either ``except`` catches it.

    Attributes:
        field: The name of the field at fault.
        problem: What is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"PyrogramConfig: field {field!r}: {problem}")


def _seconds(*, optional: bool = False) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            allowed = "None or " if optional else ""
            raise PyrogramConfigError(
                attribute.name, f"must be {allowed}a number of seconds (got {value!r})"
            )
        if not math.isfinite(value) or value <= 0:
            raise PyrogramConfigError(attribute.name, f"must be finite and > 0 (got {value!r})")

    return check


def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PyrogramConfigError(attribute.name, f"must be an int >= 1 (got {value!r})")


def _text(*, optional: bool = False) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str) or not value:
            # a secret (a str, or bytes of one) is not echoed back into logs
            shown = repr(value) if attribute.repr is not False else type(value).__name__
            raise PyrogramConfigError(attribute.name, f"must be a non-empty string (got {shown})")

    return check


def _session_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _text()(instance, attribute, value)
    if "/" in value or "\\" in value or value in (".", ".."):
        raise PyrogramConfigError(
            attribute.name, f"is a file name in workdir, not a path (got {value!r})"
        )


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise PyrogramConfigError(attribute.name, f"must be a bool (got {value!r})")


def _to_path(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _to_items(value: Any) -> Any:
    """A proxy mapping as sorted ``(key, value)`` pairs (a frozen config stays hashable)."""
    if isinstance(value, Mapping):
        return tuple(sorted(value.items()))
    return value


_PROXY_SCHEMES: Final = frozenset({"socks4", "socks5", "http"})


def _check_proxy(field: str, value: Any) -> None:
    if not isinstance(value, tuple):
        raise PyrogramConfigError(
            field, f"must be a mapping (Pyrogram's proxy dict, got {type(value).__name__})"
        )
    items = dict(value)
    scheme, hostname, port = items.get("scheme"), items.get("hostname"), items.get("port")
    if not isinstance(scheme, str) or scheme.lower() not in _PROXY_SCHEMES:
        raise PyrogramConfigError(
            field, f"'scheme' must be one of {sorted(_PROXY_SCHEMES)} (got {scheme!r})"
        )
    if not isinstance(hostname, str) or not hostname:
        raise PyrogramConfigError(field, f"'hostname' is required (got {hostname!r})")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise PyrogramConfigError(field, f"'port' must be a port number (got {port!r})")


def _proxy(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _check_proxy(attribute.name, value)


def _to_proxy_list(value: Any) -> Any:
    """A sequence of proxy mappings as a tuple of frozen ones (anything else stays, refused)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return value
    return tuple(_to_items(proxy) for proxy in value)


def _proxies(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise PyrogramConfigError(
            attribute.name,
            f"must be a sequence of proxy mappings (got {type(value).__name__}; "
            "give one as proxy=)",
        )
    for index, proxy in enumerate(value):
        _check_proxy(f"{attribute.name}[{index}]", proxy)


def _shown(value: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: REDACTED if k == "password" else v for k, v in value}


def _proxy_repr(value: tuple[tuple[str, Any], ...] | None) -> str:
    return "None" if value is None else repr(_shown(value))


def _proxies_repr(value: tuple[tuple[tuple[str, Any], ...], ...]) -> str:
    return repr([_shown(proxy) for proxy in value])


@attrs.frozen(kw_only=True)
class PyrogramConfig:
    """One account and how its :class:`PyrogramClientWorker` watches the session.

    The credentials come from exactly one of: ``session_string`` (an exported
    session, kept in memory), ``bot_token`` (a bot logs in on each incarnation; with
    ``workdir`` the key is kept in ``<workdir>/<name>.session`` and reused), or
    ``workdir`` alone (an existing session file ``<workdir>/<name>.session``). The
    interactive login of a user account is never attempted: a session that is not
    logged in ends the worker with :class:`~workers.AuthRevoked`.

    Validated on construction: an invalid field raises :class:`PyrogramConfigError`
    naming it. Secrets (``api_hash``, ``session_string``, ``bot_token``) are left out
    of ``repr``.

    Args:
        name: The account's name: the session file's name in ``workdir``, the name
            in Pyrogram's logs, and (by default) the name the worker registers under.
        api_id: The application's api_id.
        api_hash: The application's api_hash.
        session_string: An exported Pyrogram session string.
        bot_token: A bot's token.
        workdir: The directory of the session file and of Pyrogram's downloads.
        connect_timeout: Seconds for the whole opening: connect, bot login,
            ``get_me()``, ``updates.GetState``. An unreachable data centre ends the
            start with :class:`~workers.ConnectionLost` after this.
        ping_interval: Seconds between heartbeat pings; ``None`` for no heartbeat
            (a black-holed link is then left to Pyrogram's 10 s read timeout and
            its endless reconnect loop).
        ping_timeout: Seconds a heartbeat ping on a live link may take. A silent
            (black-holed) link is found within ``ping_interval + ping_timeout``.
        reconnect_timeout: Seconds a session Pyrogram reported down (a dropped link,
            a refusing data centre) may take to come back by Pyrogram's own
            reconnect, before the incarnation ends with
            :class:`~workers.ConnectionLost` and the supervisor restarts it. Pyrogram
            retries at once, then every second; the default covers a few of its
            rounds. Where a ping of the heartbeat must prove the session back (it
            found the connection broken before Pyrogram did), that ping may take
            what is left of it, and at least ``ping_timeout`` (an account among many
            reconnecting at once is slow to answer). Watched by the heartbeat
            (``ping_interval`` set).
        no_updates_timeout: End the incarnation after this many seconds without an
            update (:class:`UpdatesStalled`); ``None``: no watchdog. Only for accounts
            that always receive updates.
        stop_timeout: Seconds the goodbye (``terminate()``, ``disconnect()``) may take
            when an incarnation ends, within the child's shutdown grace; then the loop
            is left regardless.
        handler_workers: Pyrogram's handler tasks. With 1 (the default) updates reach
            the application in the order they arrived.
        proxy: Pyrogram's proxy mapping (``scheme`` socks4/socks5/http, ``hostname``,
            ``port``, optional ``username``/``password``): the same as ``proxies``
            with one.
        proxies: Proxy mappings, rotated: each incarnation after one that ended
            with :class:`~workers.ProxyFailed` takes the next (and the first after
            the last). A proxy is blamed when the session does not come up within
            ``connect_timeout``, or is lost, and a tunnel through it to the data
            centre fails within ``proxy_timeout``.
        proxy_timeout: Seconds that tunnel check through the proxy may take.
        ipv6: Connect over IPv6.
        test_mode: Use Telegram's test data centres.
    """

    name: str = attrs.field(validator=_session_name)
    api_id: int = attrs.field(validator=_positive_int)
    api_hash: str = attrs.field(repr=False, validator=_text())
    session_string: str | None = attrs.field(
        default=None, repr=False, validator=_text(optional=True)
    )
    bot_token: str | None = attrs.field(default=None, repr=False, validator=_text(optional=True))
    workdir: str | None = attrs.field(
        default=None, converter=_to_path, validator=_text(optional=True)
    )
    connect_timeout: float = attrs.field(default=10.0, validator=_seconds())
    ping_interval: float | None = attrs.field(default=5.0, validator=_seconds(optional=True))
    ping_timeout: float = attrs.field(default=1.5, validator=_seconds())
    reconnect_timeout: float = attrs.field(default=5.0, validator=_seconds())
    no_updates_timeout: float | None = attrs.field(default=None, validator=_seconds(optional=True))
    stop_timeout: float = attrs.field(default=2.0, validator=_seconds())
    handler_workers: int = attrs.field(default=1, validator=_positive_int)
    proxy: tuple[tuple[str, Any], ...] | None = attrs.field(
        default=None, converter=_to_items, validator=_proxy, repr=_proxy_repr
    )
    proxies: tuple[tuple[tuple[str, Any], ...], ...] = attrs.field(
        default=(), converter=_to_proxy_list, validator=_proxies, repr=_proxies_repr
    )
    proxy_timeout: float = attrs.field(default=5.0, validator=_seconds())
    ipv6: bool = attrs.field(default=False, validator=_flag)
    test_mode: bool = attrs.field(default=False, validator=_flag)

    def __attrs_post_init__(self) -> None:
        for secret in (self.api_hash, self.session_string, self.bot_token):
            register_secret(secret)
        if self.session_string is not None:
            register_secret(_auth_key(self.session_string))
        for proxy in self.proxy_list:
            register_secret(proxy.get("password"))
        if self.proxy is not None and self.proxies:
            raise PyrogramConfigError("proxies", "give proxy (one) or proxies, not both")
        # Pyrogram logs ImportBotAuthorization (api_hash, the token) at DEBUG
        install_log_redaction()
        if self.session_string is not None and self.bot_token is not None:
            raise PyrogramConfigError("bot_token", "give a session_string or a bot_token, not both")
        if self.session_string is None and self.bot_token is None and self.workdir is None:
            raise PyrogramConfigError(
                "session_string",
                "no credentials: give a session_string, a bot_token, or the workdir of a "
                "session file",
            )

    @property
    def in_memory(self) -> bool:
        """Whether the session lives in memory only (no session file is read or written)."""
        return self.session_string is not None or self.workdir is None

    @property
    def session_file(self) -> str | None:
        """The session file's path, if the session is kept in a file."""
        if self.in_memory:
            return None
        assert self.workdir is not None
        return os.path.join(self.workdir, f"{self.name}.session")

    @property
    def proxy_dict(self) -> dict[str, Any] | None:
        """The proxy as the mapping Pyrogram takes."""
        return None if self.proxy is None else dict(self.proxy)

    @property
    def proxy_list(self) -> tuple[dict[str, Any], ...]:
        """The proxies to rotate through, as the mappings Pyrogram takes (``proxy`` as one)."""
        chosen = self.proxies if self.proxy is None else (self.proxy,)
        return tuple(dict(proxy) for proxy in chosen)


def _auth_key(session_string: str) -> bytes | None:
    """The auth key inside a Pyrogram session string (it may be logged as bytes)."""
    try:
        packed = base64.urlsafe_b64decode(session_string + "=" * (-len(session_string) % 4))
    except (ValueError, TypeError):
        return None
    for layout in _SESSION_LAYOUTS:
        if len(packed) == struct.calcsize(layout):
            key = next(part for part in struct.unpack(layout, packed) if isinstance(part, bytes))
            return key
    return None


# Pyrogram's SESSION_STRING_FORMAT and OLD_SESSION_STRING_FORMAT (the 256-byte key in each)
_SESSION_LAYOUTS: Final = (">BI?256sQ?", ">B?256sI?", ">B?256sQ?")


# --------------------------------------------------------------------------- values


@attrs.frozen(eq=False)
class PyrogramUpdate:
    """An update a Pyrogram handler received, as delivered to the application.

    Attributes:
        account: The worker's name (the account it arrived on).
        kind: The Pyrogram handler class that received it (``"MessageHandler"``,
            ``"RawUpdateHandler"``, ...).
        update: The handler's first argument: a ``pyrogram.types.Message``, a
            ``CallbackQuery``, a raw ``Update`` ... It belongs to the incarnation's
            client: methods bound to it (``message.reply()``) fail once that
            incarnation ended; call through the worker instead.
        extra: The handler's further arguments (``users`` and ``chats`` for raw updates).
    """

    account: str
    kind: str
    update: Any
    extra: tuple[Any, ...] = ()


@attrs.frozen(eq=False)
class RequestRejected:
    """A mailbox request's error, returned as the reply (OTP's ``{error, Reason}``).

    The worker goes on serving: a request's own error (``PEER_ID_INVALID``, a bad
    argument, a timeout) says nothing about the session. A FloodWait or a revoked
    session is returned the same way, and also ends the incarnation.

    Attributes:
        error: What the call raised.
    """

    error: BaseException

    def unwrap(self) -> NoReturn:
        """Raise the error."""
        raise self.error


@attrs.frozen(auto_exc=True)
class UpdatesStalled(HeartbeatTimeout):
    """No update arrived for ``after`` seconds: the server stopped pushing them.

    Telegram is known to stop sending updates to a session that still answers
    pings; a new session resubscribes.
    """

    recovery: ClassVar[str] = "reconnect (a new session resubscribes to updates)"


@attrs.frozen(auto_exc=True)
class SessionRenewed(ConnectionLost):
    """The session was revoked and the ``relogin`` hook gave new credentials.

    The incarnation ends so that the next one connects with them: restarted (with
    backoff, counted toward the intensity, so a hook whose sessions are revoked
    at once again cannot loop).
    """

    recovery: ClassVar[str] = "reconnect with the new credentials"


#: The re-login hook: called with the account's config and the :class:`~workers.AuthRevoked`
#: failure; returns the new credentials (a config, or a session string for this one), or
#: raises (or returns ``None``) when it cannot: the account then stays down.
Relogin: TypeAlias = (
    "Callable[[PyrogramConfig, AuthRevoked], Awaitable[PyrogramConfig | str | None]]"
)


# --------------------------------------------------------------------------- the worker


@attrs.define(eq=False)
class _Incarnation:
    """One session: its loop, client, and the state its tasks share."""

    loop: asyncio.AbstractEventLoop | None = None
    client: Any = None
    me: Any = None
    failure: BaseException | None = None
    failed: trio.Event = attrs.Factory(trio.Event)
    # set by Pyrogram's disconnect handler: the heartbeat watches the session come back
    poke: trio.Event = attrs.Factory(trio.Event)
    # when the session was first seen down (None: up, as far as is known)
    down_since: float | None = None
    # Pyrogram reported the outage: its session stopped, so a start seen after it is
    # a new connection, proven by Pyrogram's own Ping and InitConnection
    reported: bool = False
    last_update: float = -math.inf
    delivering: int = 0
    ready: bool = False
    closing: bool = False
    # the failure is final: blamed on the proxy or renewed by relogin, if it had to be
    settled: bool = False

    def went_down(self) -> None:
        """Pyrogram reported the session down: keep when the outage began, wake the heartbeat."""
        if self.down_since is None:
            self.down_since = trio.current_time()
        self.reported = True
        self.poke.set()

    def fail(self, failure: BaseException) -> None:
        """End the incarnation with ``failure``, unless it already has a reason."""
        if self.failure is None:
            self.failure = failure
        self.failed.set()


class _Pong(enum.Enum):
    """How a heartbeat ping ended."""

    ANSWERED = "answered"
    #: no answer within its time on a session Pyrogram calls started (a black hole)
    SILENT = "silent"
    #: the connection broke under it, or the session is down
    BROKEN = "broken"


def _method(request: Any) -> Callable[[Client], Awaitable[Any]]:
    """A mailbox request as a function of the client."""
    if callable(request):
        return request  # type: ignore[no-any-return]
    name, args = (request, ()) if isinstance(request, str) else (request[0], request[1:])
    method = getattr(Client, name, None) if isinstance(name, str) else None
    if (
        method is None
        or name.startswith("_")
        # Pyrogram wraps its methods for synchronous use: look at what is wrapped
        or not inspect.iscoroutinefunction(inspect.unwrap(method))
    ):
        msg = f"not a Pyrogram Client coroutine method: {name!r}"
        raise TypeError(msg)
    return lambda client: getattr(client, name)(*args)


class PyrogramClientWorker(Worker):
    """One Telegram account through Pyrogram, as a supervised worker.

    Each incarnation runs a fresh Pyrogram ``Client`` on its own trio-asyncio loop
    (see the module's docstring); ``init`` returns once the session is connected and
    authorised, and every failure ends the incarnation typed.

    Calling Telegram, from any trio task:

    - ``await worker.aio(worker.client.send_message, "me", "hi")`` awaits any
      coroutine method of the running client (``worker.invoke(raw_function)`` for raw
      functions). Errors are raised to the caller; a FloodWait or a revoked session
      also ends the incarnation (the supervisor then waits, or leaves it down). Other
      errors (a bad request, a call's own timeout) are the caller's: the heartbeat,
      not one slow call, judges the link.
    - through the mailbox, by name: ``await registry.call(name, ("get_me",))``,
      ``("invoke", raw_function)``, ``("send_message", chat, text)`` or a function of
      the client (``lambda c: c.send_message(chat, text, disable_notification=True)``).
      An error comes back as a :class:`RequestRejected` reply (the worker keeps
      serving). ``cast`` takes the same requests and logs their errors.

    Receiving: give ``updates`` (a memory channel the application owns and reads; the
    worker never closes it and it outlives incarnations, so a pool of workers can
    share one). Each Pyrogram handler class in ``handlers`` is registered (each in its
    own group) with a callback that sends a :class:`PyrogramUpdate`; while the
    application does not take them, Pyrogram's handler tasks wait (with
    ``handler_workers=1`` updates arrive in order). Override :meth:`install_handlers`
    for filters or your own handlers.

    Args:
        config: The account, credentials and timeouts.
        updates: Where received updates go; ``None``: none are delivered (and no
            ``updates.GetState`` is sent, unless ``no_updates_timeout`` is set).
        handlers: Pyrogram handler classes whose updates are delivered.
        name: The name it registers under (default: ``config.name``).
        registry: Where it registers (default: ``workers.registry``).
        relogin: The re-login hook (:data:`Relogin`), awaited when an incarnation
            ends with :class:`~workers.AuthRevoked` (also on the first start): new
            credentials end it with :class:`SessionRenewed` instead, and the next
            incarnation (and every later one: they become :attr:`config`) uses them;
            a hook that raises or returns ``None`` leaves the failure an
            :class:`~workers.AuthRevoked` (its cause says why), so a TRANSIENT
            account stays down, visible. ``None``: revoked stays revoked.

    Raises:
        TypeError: ``config`` is not a :class:`PyrogramConfig`, or ``handlers`` holds
            something else than Pyrogram handler classes.
    """

    classifier: ClassVar[Classifier] = DEFAULT
    reconnect_backoff: ClassVar[Backoff | None] = ACCOUNT_BACKOFF
    reconnect_intensity: ClassVar[int] = 5

    def __init__(
        self,
        config: PyrogramConfig,
        *,
        updates: trio.MemorySendChannel[PyrogramUpdate] | None = None,
        handlers: Iterable[type[Any]] = (MessageHandler,),
        name: str | None = None,
        registry: Registry | None = None,
        relogin: Relogin | None = None,
    ) -> None:
        if not isinstance(config, PyrogramConfig):
            msg = f"config must be a PyrogramConfig (got {config!r})"
            raise TypeError(msg)
        super().__init__(name=name or config.name, registry=registry)
        self.config = config
        self.updates = updates
        self.handlers: tuple[type[Any], ...] = tuple(handlers)
        for handler_class in self.handlers:
            if not (isinstance(handler_class, type) and issubclass(handler_class, Handler)):
                msg = f"handlers are Pyrogram handler classes (got {handler_class!r})"
                raise TypeError(msg)
        self._label = name or config.name
        self._run: _Incarnation | None = None
        self.relogin = relogin
        self._proxy_index = 0

    # ---------------------------------------------------------- the application's API

    @property
    def name(self) -> str:
        """The name the worker registers under."""
        return self._label

    @property
    def proxy(self) -> dict[str, Any] | None:
        """The proxy this (or the next) incarnation uses; ``None``: direct."""
        proxies = self.config.proxy_list
        return proxies[self._proxy_index % len(proxies)] if proxies else None

    @property
    def running(self) -> bool:
        """Whether a session is up (between ``init`` and the incarnation's end)."""
        run = self._run
        return run is not None and run.ready and not run.closing

    @property
    def client(self) -> Client:
        """The running incarnation's Pyrogram ``Client``.

        Await its coroutine methods through :meth:`aio`, not directly: they run on
        the incarnation's asyncio loop.

        Raises:
            NotRunning: between incarnations.
        """
        client: Client = self._live().client
        return client

    @property
    def me(self) -> Any:
        """The account's user (``get_me()`` of the running incarnation).

        Raises:
            NotRunning: between incarnations.
        """
        return self._live().me

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running incarnation's asyncio loop (closed when the incarnation ends).

        Raises:
            NotRunning: between incarnations.
        """
        run = self._live()
        assert run.loop is not None
        return run.loop

    async def aio(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await an asyncio coroutine function (a method of :attr:`client`) from trio.

        A FloodWait or a revoked session (401, 406 ``AUTH_KEY_DUPLICATED``) is raised
        to the caller and also ends the incarnation with the typed failure.

        Raises:
            NotRunning: between incarnations, or the incarnation ended during the call.
        """
        run = self._live()
        try:
            return await self._call(run, fn, *args, **kwargs)
        except Exception as error:
            failure = self.classifier.classify(error)
            if isinstance(failure, _ACCOUNT_FAILURES):
                run.fail(failure)
            raise

    async def invoke(self, query: Any, **kwargs: Any) -> Any:
        """``client.invoke(query, **kwargs)`` through :meth:`aio` (a raw Telegram function).

        Raises:
            NotRunning: between incarnations.
        """
        return await self.aio(self.client.invoke, query, **kwargs)

    def fail(self, failure: Failure) -> None:
        """End the running incarnation with ``failure`` (OTP's ``exit(Pid, Reason)``).

        The supervisor then acts on it as on any failure: ``fail(ConnectionLost(...))``
        reconnects, ``fail(FloodWait(seconds=60))`` pauses the account for a minute.

        Raises:
            NotRunning: between incarnations.
            TypeError: ``failure`` is not a typed failure.
        """
        if not isinstance(failure, Failure):
            msg = f"fail() takes a workers.Failure (got {failure!r})"
            raise TypeError(msg)
        self._live().fail(failure)

    # --------------------------------------------------------------- overridables

    def install_handlers(self, client: Client) -> None:
        """Register the handlers that deliver updates (called before connecting).

        The default registers each class of ``handlers`` in its own group (0, 1, ...)
        with a callback sending a :class:`PyrogramUpdate` to ``updates``. Override to
        add filters or handlers of your own; deliver with :meth:`deliver`.

        Args:
            client: The incarnation's client, not connected yet.
        """
        if self.updates is None:
            return
        for group, handler_class in enumerate(self.handlers):
            kind = handler_class.__name__

            async def callback(client: Client, *args: Any, kind: str = kind) -> None:
                update = PyrogramUpdate(
                    account=self._label, kind=kind, update=args[0] if args else None, extra=args[1:]
                )
                await self.deliver(update)

            client.add_handler(handler_class(callback), group=group)

    async def deliver(self, update: PyrogramUpdate) -> None:
        """Send an update to ``updates``, waiting while the application is behind.

        An asyncio coroutine: await it from Pyrogram handler callbacks. If the
        application closed its channel, the incarnation ends with
        :class:`~workers.Crashed` (nobody is listening).
        """
        run = self._run
        if run is None or run.loop is None or self.updates is None:
            return
        run.delivering += 1
        try:
            await run.loop.trio_as_future(self.updates.send, update)  # type: ignore[attr-defined]
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            run.fail(Crashed(exception=error))
        finally:
            run.delivering -= 1
            run.last_update = trio.current_time()

    async def handle_call(self, ctx: Context, request: Any) -> Any:
        """Run a :data:`PyrogramRequest`; its error is the reply, as :class:`RequestRejected`."""
        try:
            method = _method(request)
            run = self._live()
            return await self.aio(lambda: method(run.client))
        except Exception as error:
            redact_exception(error)  # the reply may be logged
            return RequestRejected(error=error)

    async def handle_cast(self, ctx: Context, message: Any) -> None:
        """Run a :data:`PyrogramRequest` on the client; an error is logged."""
        result = await self.handle_call(ctx, message)
        if isinstance(result, RequestRejected):
            log.warning("%s: cast %r failed: %r", self._label, message, result.error)

    # ------------------------------------------------------------------ lifecycle

    async def init(self, ctx: Context) -> None:
        """Connect and authorise within ``connect_timeout`` (see the class docstring)."""
        self._label = ctx.mailbox.name
        if isinstance(ctx.last_failure, ProxyFailed) and len(self.config.proxy_list) > 1:
            self._proxy_index += 1
            log.warning(
                "%s: %s; next proxy: %s", self._label, ctx.last_failure, _proxy_label(self.proxy)
            )
        run = _Incarnation()
        try:
            await ctx.nursery.start(self._host, run, name=f"{self._label}: pyrogram loop")
        except Exception as error:
            failure = await self._settle(run, self.classifier.classify(error))
            # a refusal on a restart, a proxy to rotate past, new credentials: the
            # incarnation ends just after its start instead of failing it, so that the
            # next one follows (a failed first start would take the tree down with it)
            if refused_on_restart(ctx, failure) or isinstance(
                failure, ProxyFailed | SessionRenewed
            ):
                run.closing = True
                run.fail(failure)
                self._run = run
                return
            if failure is error:
                raise
            raise failure from error

    async def run(self, ctx: Context) -> None:
        """Heartbeat and watch for updates until the session fails."""
        run = self._run
        assert run is not None
        if run.settled:  # it ended while starting
            assert run.failure is not None
            raise run.failure
        config = self.config
        async with trio.open_nursery() as tasks:
            if config.ping_interval is not None:
                tasks.start_soon(self._guarded, run, self._heartbeat, name=f"{self._label}: ping")
            if config.no_updates_timeout is not None:
                tasks.start_soon(
                    self._guarded, run, self._watchdog, name=f"{self._label}: watchdog"
                )
            await run.failed.wait()
            tasks.cancel_scope.cancel()
        failure = run.failure
        assert failure is not None
        if isinstance(failure, Failure):
            failure = await self._settle(run, failure)
        raise failure

    # ------------------------------------------------------------------ internals

    async def _settle(self, run: _Incarnation, failure: Failure) -> Failure:
        """What the incarnation ends with: a lost session blamed on a failing proxy,
        a revoked one renewed by ``relogin``; else ``failure`` itself."""
        run.settled = True
        if type(failure) in (ConnectionLost, HeartbeatTimeout):
            return await self._blame_proxy(run, failure)
        if isinstance(failure, AuthRevoked) and self.relogin is not None:
            return await self._relogin(failure)
        return failure

    async def _blame_proxy(self, run: _Incarnation, failure: Failure) -> Failure:
        proxy = self.proxy
        address = _dialled(run.client)
        if proxy is None or address is None:
            return failure
        cause = await tunnel_failure(proxy, address, timeout=self.config.proxy_timeout)
        if cause is None:  # the proxy tunnels: the data centre or the link is at fault
            return failure
        blamed = ProxyFailed(proxy=_proxy_label(proxy), cause=f"{cause}, after {failure}")
        blamed.__cause__ = failure
        return blamed

    async def _relogin(self, failure: AuthRevoked) -> Failure:
        assert self.relogin is not None
        try:
            renewed = await self.relogin(self.config, failure)
            if isinstance(renewed, str):
                renewed = attrs.evolve(self.config, session_string=renewed)
            if not isinstance(renewed, PyrogramConfig):
                msg = f"the relogin hook gave no credentials (got {type(renewed).__name__})"
                raise TypeError(msg)
        except Exception as error:
            redact_exception(error)
            log.warning("%s: re-login failed: %r", self._label, error)
            down = AuthRevoked(cause=f"{failure.cause}; re-login failed: {error!r}")
            down.__cause__ = error
            return down
        log.info("%s: logged in again after %s", self._label, failure)
        self.config = renewed
        return SessionRenewed(reason=f"{failure.cause}; logged in again")

    def _live(self) -> _Incarnation:
        run = self._run
        if run is None or not run.ready or run.closing:
            raise NotRunning(self._label)
        return run

    async def _call(
        self, run: _Incarnation, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await an asyncio coroutine function on ``run``'s loop, from any trio task."""
        loop = run.loop
        if loop is None or loop.is_closed():
            raise NotRunning(self._label)
        token = trio_asyncio.current_loop.set(loop)
        try:
            return await aio_call(fn, *args, **kwargs)
        except asyncio.CancelledError as error:
            # the loop cancelled the call (the incarnation is ending), not our caller
            raise NotRunning(self._label) from error
        finally:
            trio_asyncio.current_loop.reset(token)

    def _client(self, run: _Incarnation) -> Client:
        config = self.config
        # Pyrogram's signature says ``str = None``: pass the optional ones untyped
        options: dict[str, Any] = {
            "session_string": config.session_string,
            "bot_token": config.bot_token,
            "proxy": self.proxy,
        }
        client = Client(
            config.name,
            api_id=config.api_id,
            api_hash=config.api_hash,
            in_memory=config.in_memory,
            workdir=config.workdir or os.curdir,
            # with no_updates Pyrogram wraps every call in InvokeWithoutUpdates, pings too,
            # which Pyrogram itself never sends wrapped: stay with the default, and let
            # the dispatcher (started by initialize()) consume what arrives
            no_updates=False,
            sleep_threshold=0,
            workers=config.handler_workers,
            ipv6=config.ipv6,
            test_mode=config.test_mode,
            **options,
        )

        _cheap_storage_accessors(client.storage)
        if not config.in_memory:
            _private_session_file(client)
        if config.no_updates_timeout is not None:

            async def on_update(client: Client, update: Any, users: Any, chats: Any) -> None:
                run.last_update = trio.current_time()

            # a group of its own before the application's: it sees every update
            client.add_handler(RawUpdateHandler(on_update), group=-1)
        self.install_handlers(client)
        # Pyrogram keeps one disconnect handler: the application's, if it set one, runs first
        theirs = client.disconnect_handler

        async def on_disconnect(client: Client) -> None:
            if theirs is not None:
                await theirs(client)
            # Pyrogram calls this on every session stop, each failed try of its own
            # reconnect included: the first report of an outage starts its clock
            if not run.closing:
                run.went_down()

        client.add_handler(DisconnectHandler(on_disconnect))
        return client

    async def _host(
        self, run: _Incarnation, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the incarnation's loop: open the session, keep it, and close it."""
        config = self.config
        async with open_bridged_loop() as loop:
            run.loop = loop
            loop.set_exception_handler(lambda loop, context: self._loop_error(run, context))
            try:
                self._run = run
                # Client.__init__ takes the current asyncio loop: build it inside
                run.client = self._client(run)
                with trio.move_on_after(config.connect_timeout) as deadline:
                    await self._open(run)
                if deadline.cancelled_caught:
                    raise ConnectionLost(
                        reason=f"no session within connect_timeout={config.connect_timeout}s"
                    )
                run.last_update = trio.current_time()
                # a report from Pyrogram's retries while connecting is over: the session is up
                run.down_since, run.reported = None, False
                run.ready = True
                task_status.started()
                await trio.sleep_forever()
            finally:
                run.closing = True
                if self._run is run:
                    self._run = None
                with supervisor.shutdown_grace(), trio.move_on_after(config.stop_timeout):
                    await self._close(run)

    def _loop_error(self, run: _Incarnation, context: dict[str, Any]) -> None:
        """An error no one awaited on the loop: a Pyrogram background task failed.

        trio-asyncio's default handler would raise it out of the loop's block (an
        untyped crash, also for Pyrogram's reconnect task failing on a storage closed
        under it during the goodbye); asyncio's would only log it, and Pyrogram's
        session could be dead without a word (a failed ``Session.restart``). Running,
        it ends the incarnation typed (``AUTH_KEY_DUPLICATED`` in a reconnect is
        :class:`~workers.AuthRevoked`); closing, it is only logged.
        """
        error = context.get("exception")
        message = context.get("message", "error in the asyncio loop")
        if run.closing or not isinstance(error, Exception):
            log.debug("%s: %s: %r", self._label, message, error)
            return
        log.warning("%s: %s: %r", self._label, message, error)
        run.fail(self.classifier.classify(error))

    async def _open(self, run: _Incarnation) -> None:
        config = self.config
        client = run.client
        session_file = config.session_file
        only_file = session_file is not None and config.bot_token is None
        if only_file and not await trio.Path(str(session_file)).exists():
            raise AuthRevoked(cause=f"no session file {session_file}")
        if not await self._call(run, client.connect):
            if config.bot_token is None:
                raise AuthRevoked(cause="the session is not logged in")
            await self._call(run, client.sign_in_bot, config.bot_token)
        # connect() works unauthorised: the first authorised call tells a revoked session
        run.me = client.me = await self._call(run, client.get_me)
        if self.updates is not None or config.no_updates_timeout is not None:
            # Telegram sends updates to a session once it asked for the state
            await self._call(run, client.invoke, raw.functions.updates.GetState())
        # the dispatcher consumes the updates that arrive anyway (else they pile up)
        await self._call(run, client.initialize)

    async def _close(self, run: _Incarnation) -> None:
        """Say goodbye (save a session file, stop the dispatcher, disconnect) if possible."""
        client = run.client
        if client is None:
            return
        try:
            if client.is_initialized:
                await self._call(run, client.terminate)
            if client.is_connected:
                await self._call(run, client.disconnect)
            elif getattr(client.storage, "conn", None) is not None:
                # cut short while connecting: disconnect() would refuse, close the storage
                await self._call(run, client.storage.close)
        except Exception as error:
            # a failed goodbye changes nothing: leaving the loop ends what is left
            log.debug("%s: disconnect failed: %r", self._label, error)

    async def _guarded(
        self, run: _Incarnation, fn: Callable[[_Incarnation], Awaitable[None]]
    ) -> None:
        try:
            await fn(run)
        except Exception as error:
            run.fail(self.classifier.classify(error))

    async def _heartbeat(self, run: _Incarnation) -> None:
        """Ping a live session every ``ping_interval``; watch a session reported down come back."""
        config = self.config
        assert config.ping_interval is not None
        ping_ids = itertools.count(1)
        while True:
            if run.down_since is None:
                with trio.move_on_after(config.ping_interval):
                    await run.poke.wait()
                run.poke = trio.Event()
            if run.down_since is None:
                failure = await self._ping_live(run, next(ping_ids))
            else:
                failure = await self._come_back(run, ping_ids)
            if failure is not None:
                run.fail(failure)
                return

    async def _ping_live(self, run: _Incarnation, ping_id: int) -> Failure | None:
        """One ping of a live session: a failure if it went unanswered, else ``None``."""
        timeout = self.config.ping_timeout
        outcome = await self._ping(run, ping_id, timeout)
        if outcome is _Pong.BROKEN and run.down_since is None:
            # the connection broke under the ping: Pyrogram restarts the session
            run.down_since = trio.current_time()
        if run.down_since is not None:
            return None  # reported down meanwhile: it is given reconnect_timeout
        return None if outcome is _Pong.ANSWERED else HeartbeatTimeout(after=timeout)

    async def _come_back(self, run: _Incarnation, ping_ids: Iterator[int]) -> Failure | None:
        """Wait for Pyrogram's own reconnect, within ``reconnect_timeout`` of the report.

        The session is left alone while it is down (Pyrogram's ``invoke`` would only
        wait for it, or fail at once): the heartbeat waits for Pyrogram to say the
        session is started again. After Pyrogram's report, that start is the proof:
        Pyrogram sets it only once the new connection answered its ``Ping`` and
        ``InitConnection``, and the heartbeat's next ping follows ``ping_interval``
        later (a ping of its own at once would add a fifth to the work of a herd of
        accounts reconnecting together). After a ping that found the connection
        broken (no report yet), one ping proves it, given what is left of the
        deadline and at least ``ping_timeout``. Not back in time is
        :class:`~workers.ConnectionLost`; back but silent is
        :class:`~workers.HeartbeatTimeout`.
        """
        config = self.config
        assert run.down_since is not None
        deadline = run.down_since + config.reconnect_timeout
        started: asyncio.Event = run.client.session.is_started
        while trio.current_time() < deadline:
            with trio.move_on_at(deadline):
                await self._call(run, started.wait)
            if not started.is_set():
                continue  # the deadline passed, or it went down again at once
            if run.reported:
                outcome = _Pong.ANSWERED  # proven by Pyrogram's own start
            else:
                wait = max(config.ping_timeout, deadline - trio.current_time())
                outcome = await self._ping(run, next(ping_ids), wait)
            if outcome is _Pong.ANSWERED:
                # back: this outage is over (a later report starts another)
                run.down_since, run.reported = None, False
                run.poke = trio.Event()
                return None
            if outcome is _Pong.SILENT:
                return HeartbeatTimeout(after=wait)
            # broken again: Pyrogram is about to restart the session; no hot loop meanwhile
            with trio.move_on_at(deadline):
                await trio.sleep(_RETRY_PING_AFTER)
        return ConnectionLost(
            reason=f"session lost and not back within reconnect_timeout={config.reconnect_timeout}s"
        )

    async def _ping(self, run: _Incarnation, ping_id: int, wait: float) -> _Pong:
        """One ``Ping`` given ``wait`` seconds (plus a margin: Pyrogram's timeout fires first)."""
        ping = raw.functions.Ping(ping_id=ping_id)
        with trio.move_on_after(wait + _PING_MARGIN):
            try:
                await self._call(run, run.client.invoke, ping, retries=0, timeout=wait)
            except TimeoutError:
                return _Pong.SILENT
            except OSError:
                return _Pong.BROKEN
            return _Pong.ANSWERED
        # Pyrogram's invoke still waited for its session to be started: it is down
        started: asyncio.Event = run.client.session.is_started
        return _Pong.SILENT if started.is_set() else _Pong.BROKEN

    async def _watchdog(self, run: _Incarnation) -> None:
        limit = self.config.no_updates_timeout
        assert limit is not None
        while True:
            await trio.sleep_until(run.last_update + limit)
            now = trio.current_time()
            if run.delivering:
                # the application is behind, not the server: updates are arriving
                run.last_update = now
            elif now >= run.last_update + limit:
                run.fail(UpdatesStalled(after=limit))
                return


def _proxy_label(proxy: Mapping[str, Any] | None) -> str:
    """A proxy as ``scheme://host:port`` (never its credentials)."""
    if proxy is None:
        return "direct"
    return f"{proxy['scheme']}://{proxy['hostname']}:{proxy['port']}"


def _dialled(client: Any) -> tuple[str, int] | None:
    """The data centre address Pyrogram's session dials (through the proxy), if it got so far."""
    connection = getattr(getattr(client, "session", None), "connection", None)
    address = getattr(connection, "address", None)
    if isinstance(address, tuple) and len(address) == 2:
        return str(address[0]), int(address[1])
    return None


def _cheap_storage_accessors(storage: Any) -> None:
    """Let ``storage`` find its column by the caller's name without ``inspect.stack()``.

    Pyrogram's SQLite storage names the column of each accessor (``dc_id``,
    ``auth_key``...) by ``inspect.stack()[2].function``: a full stack with
    source lines, for each of the ~15 accesses of a connect. Under trio-asyncio
    the stack is deep, and under ``python -m`` every ``<frozen runpy>`` frame
    rescans ``sys.modules``: measured, 58 ms of CPU per account start, against
    4.6 ms with the same name read from the frame itself. Only Pyrogram's own
    accessors are replaced (a subclass that overrides them keeps its own).
    """
    kind = type(storage)
    if not isinstance(storage, SQLiteStorage) or (kind._get, kind._set) != (
        SQLiteStorage._get,
        SQLiteStorage._set,
    ):
        return

    # frames: 0 this, 1 ``_accessor``, 2 the accessor whose name is the column
    def get() -> Any:
        column = sys._getframe(2).f_code.co_name
        return storage.conn.execute(f"SELECT {column} FROM sessions").fetchone()[0]

    def set_(value: Any) -> None:
        column = sys._getframe(2).f_code.co_name
        with storage.conn:
            storage.conn.execute(f"UPDATE sessions SET {column} = ?", (value,))

    storage._get, storage._set = get, set_  # type: ignore[method-assign]


def _private_session_file(client: Client) -> None:
    """Make the session file (it holds the auth key) readable by its owner only.

    Pyrogram's ``FileStorage.open`` creates ``<name>.session`` with the umask's
    mode (0644 usually). It is set to 0600 as soon as it is opened, before the auth
    key is written to it (SQLite's journal files take the database's mode); an
    existing file is tightened too.
    """
    storage = client.storage
    database = getattr(storage, "database", None)
    if database is None:
        return
    opened: Callable[[], Awaitable[None]] = storage.open

    async def open_private() -> None:
        await opened()
        os.chmod(database, 0o600)

    storage.open = open_private  # type: ignore[method-assign]


# --------------------------------------------------------------------------- many accounts


@attrs.frozen(kw_only=True)
class _AccountRunner:
    """The template of :func:`account_pool`: one account's own supervisor."""

    name: str
    updates: trio.MemorySendChannel[PyrogramUpdate] | None = attrs.field(eq=False)
    handlers: tuple[type[Any], ...]
    registry: Registry | None = attrs.field(eq=False)
    backoff: Backoff | None
    intensity: int
    period: float
    shutdown: ShutdownValue
    hooks: tuple[supervisor.Hook, ...] | None = attrs.field(eq=False)
    relogin: Relogin | None = attrs.field(default=None, eq=False)
    failure_policy: FailurePolicy | None = None

    async def __call__(
        self, config: PyrogramConfig, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if not isinstance(config, PyrogramConfig):
            msg = f"start_child takes a PyrogramConfig (got {config!r})"
            raise TypeError(msg)
        worker = PyrogramClientWorker(
            config,
            updates=self.updates,
            handlers=self.handlers,
            registry=self.registry,
            relogin=self.relogin,
        )
        spec = SupervisorSpec(
            children=[
                worker.child_spec("client", restart=Restart.TRANSIENT, shutdown=self.shutdown)
            ],
            backoff=self.backoff,
            intensity=self.intensity,
            period=self.period,
            name=f"{self.name}/{config.name}",
            classifier=worker.classifier,
            failure_policy=self.failure_policy,
        )
        await supervisor.run_supervisor(spec, hooks=self.hooks, task_status=task_status)


def account_pool(
    *,
    updates: trio.MemorySendChannel[PyrogramUpdate] | None = None,
    handlers: Iterable[type[Any]] = (MessageHandler,),
    registry: Registry | None = None,
    name: str = "accounts",
    max_children: int | None = None,
    backoff: Backoff | None = ACCOUNT_BACKOFF,
    account_intensity: int = 5,
    account_period: float = 60.0,
    shutdown: ShutdownValue = 5.0,
    restart: Restart = Restart.TRANSIENT,
    intensity: int = DEFAULT_INTENSITY,
    period: float = DEFAULT_PERIOD,
    hooks: Sequence[supervisor.Hook] | None = None,
    relogin: Relogin | None = None,
    failure_policy: FailurePolicy | None = None,
) -> DynamicSupervisorSpec:
    """A dynamic supervisor of Pyrogram accounts, started with ``start_child(config)``.

    Each account runs as its own one-child supervisor (``<name>/<config.name>``)
    around a TRANSIENT :class:`PyrogramClientWorker`, registered under
    ``config.name``. Isolation is the point: each account restarts with its own
    ``backoff`` (a FloodWait's seconds replace it), counts its own restarts against
    ``account_intensity`` per ``account_period``, and stays down on its own when its
    session is revoked (:class:`~workers.AuthRevoked`, visible in its supervisor's
    ``which_children()``/``snapshot()``, where ``restart_child("client")`` logs it in
    again). Another account never notices. Only an account that exceeds its own
    intensity reaches the pool: it is then removed (``restart`` TRANSIENT, the
    default) or restarted (PERMANENT), counting toward the pool's ``intensity``.

    Args:
        updates: The channel every account's updates go to (shared; never closed).
        handlers: Pyrogram handler classes whose updates are delivered.
        registry: Where the workers register (default: ``workers.registry``).
        name: The pool's name, and the prefix of each account's supervisor.
        max_children: The most accounts at once (``None``: no limit).
        backoff: Each account's reconnect delays.
        account_intensity: Restarts of one account allowed within ``account_period``.
        account_period: See ``account_intensity``.
        shutdown: Each worker's shutdown grace.
        restart: What the pool does with an account that gave up.
        intensity: The pool's own restart intensity (accounts that gave up).
        period: See ``intensity``.
        hooks: More event hooks for the accounts' supervisors: each joins the
            pool's tree, so the tree's own hooks (and subscribers, and metrics)
            already get every account's events, each hook once.
        relogin: Every account's re-login hook (see :class:`PyrogramClientWorker`):
            with it, a revoked account logs in again by itself, or stays down.
        failure_policy: Each account's supervisor's decisions and budgets per
            failure kind (e.g. ``specs.FIELD_REPORT_POLICY``; ``None``: the
            restart type decides). Every account is classified by
            ``workers.DEFAULT`` and the Pyrogram rules.

    Returns:
        The spec; ``await pool.start_child(config)`` adds an account and returns its
        child id. The child's ``which_children()`` value is the account supervisor's
        handle.
    """
    runner = _AccountRunner(
        name=name,
        updates=updates,
        handlers=tuple(handlers),
        registry=registry,
        backoff=backoff,
        intensity=account_intensity,
        period=account_period,
        shutdown=shutdown,
        hooks=None if hooks is None else tuple(hooks),
        relogin=relogin,
        failure_policy=failure_policy,
    )
    template = ChildSpec(
        id="account", start=runner, restart=restart, shutdown=INFINITY, kind=SUPERVISOR
    )
    return DynamicSupervisorSpec(
        template=template,
        max_children=max_children,
        intensity=intensity,
        period=period,
        name=name,
        classifier=DEFAULT,
    )
