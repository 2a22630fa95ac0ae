"""A loopback Telegram-Bot-API-shaped HTTP server, on trio and h11 (test-only).

A real server on 127.0.0.1 that real clients (httpx, or anything else speaking
HTTP/1.1) connect to, written on ``trio`` and ``h11`` (which httpx already depends
on). It is meant for tests and demos: nothing here talks to Telegram.

:class:`BotApiServer` serves ``/bot<token>/<method>`` the way the Bot API does:

- ``getUpdates`` honours ``offset`` (confirming every update below it, or a
  negative offset keeping the last ``-offset``), ``limit`` and ``timeout``
  (a real long poll, answered as soon as an update is pushed); a newer
  ``getUpdates`` ends an older one still waiting with 409, and an active
  webhook makes it 409 too, as Telegram does;
- ``getMe``, ``sendMessage``, ``setWebhook``, ``deleteWebhook`` and
  ``getWebhookInfo`` are answered; any other method can be given a responder
  (:meth:`BotApiServer.set_responder`), else it is 404 like Telegram's;
- errors have Telegram's shape: ``{"ok": false, "error_code": 429,
  "description": "...", "parameters": {"retry_after": 5}}``; a wrong or revoked
  token is 401;
- faults, injected per method for the next N requests (:class:`BotApiFault`): answer
  an error, stall (never answer), drop the connection without answering (what a
  client sees when it reuses a keep-alive connection the server had closed),
  close in the middle of the response, answer a body that never ends (or a huge one)
  or JSON nested too deep to decode; the numbering of update ids can start again
  lower (:meth:`BotApiServer.reset_update_ids`); the server can also close idle
  keep-alive connections silently (``keepalive_timeout``) or cut every open
  connection at once (:meth:`BotApiServer.drop_connections`);
- optional TLS with the loopback test certificate (``_tls``; trust it with
  ``loopback_client_ssl_context()``), so that clients behind an HTTP proxy (``_proxies``)
  tunnel with ``CONNECT`` as they do to the real, https, API.

Example::

    async with open_botapi_server() as server, httpx.AsyncClient() as client:
        server.push(message={"text": "hello"})
        response = await client.get(server.method_url("getUpdates"), params={"timeout": 5})
        assert response.json()["result"][0]["update_id"] == 1
"""

from __future__ import annotations

import contextlib
import enum
import http
import itertools
import json
import logging
import math
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio

from ._listener import STREAM_ERRORS, PeerGone, RestartableListener
from ._tls import loopback_server_ssl_context

__all__ = [
    "BotApiFault",
    "BotApiFaultAction",
    "BotApiRequest",
    "BotApiResponder",
    "BotApiServer",
    "open_botapi_server",
]

log = logging.getLogger(__name__)

BotApiResponder: TypeAlias = Callable[[dict[str, Any]], Any]
"""Answers one API call: ``params -> result``, the ``result`` of an ``ok`` answer.

To answer an error instead, return a :class:`BotApiFault` made with :meth:`BotApiFault.error`.
"""

# --------------------------------------------------------------------------- faults

_DESCRIPTIONS: Final[Mapping[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BotApiFaultAction(enum.Enum):
    """What a :class:`BotApiFault` does to a request it applies to."""

    #: Answer with an error in Telegram's shape.
    ERROR = "error"
    #: Read the request and never answer (until the connection is closed).
    STALL = "stall"
    #: Close the connection without answering, as a server that had closed an
    #: idle keep-alive connection looks to a client that reuses it.
    DROP = "drop"
    #: Send the headers and half the body, then close the connection.
    CLOSE_MID_RESPONSE = "close_mid_response"
    #: Answer 200 with a JSON body padded with ``size`` blanks (chunked; never
    #: ending when ``size`` is ``None``), as a broken or hostile server does.
    HUGE_BODY = "huge_body"
    #: Answer 200 with ``result`` nested ``size`` arrays deep.
    DEEP_JSON = "deep_json"
    #: Answer 200 with a JSON body that trickles: one blank every
    #: ``interval`` seconds (``size`` of them; never ending when ``None``).
    SLOW_BODY = "slow_body"


def _positive_or_none(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"BotApiFault: field {attribute.name!r}: must be None or an int >= 1")


def _status(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"BotApiFault: field {attribute.name!r}: must be an HTTP status (100-599)")


def _retry_after(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, int | float) or not 0 <= value < math.inf):
        raise ValueError(f"BotApiFault: field {attribute.name!r}: must be None or seconds >= 0")


@attrs.define(eq=False, kw_only=True)
class BotApiFault:
    """A fault the server applies to the next matching requests.

    Make one with :meth:`error`, :meth:`stall`, :meth:`drop` or
    :meth:`close_mid_response` and hand it to :meth:`BotApiServer.inject`.

    Attributes:
        action: What it does.
        method: The API method it applies to (case-insensitive); ``None``: any.
        times: How many requests it applies to; ``None``: until cleared.
        status: The HTTP status of an ``ERROR``.
        description: The ``description`` of an ``ERROR`` (default: Telegram's
            text for the status).
        retry_after: ``parameters.retry_after`` of an ``ERROR`` (seconds).
        json_body: Whether an ``ERROR`` has Telegram's JSON shape; ``False``
            sends a plain-text body, as a proxy or load balancer in front of
            the API would.
        size: The padding of a ``HUGE_BODY`` or a ``SLOW_BODY`` in bytes
            (``None``: endless), or the nesting depth of a ``DEEP_JSON``.
        interval: Seconds between the bytes of a ``SLOW_BODY``.
        bytes_sent: The body bytes sent by ``HUGE_BODY`` answers so far.
        hits: How many requests it was applied to so far.
    """

    action: BotApiFaultAction
    method: str | None = "getUpdates"
    times: int | None = attrs.field(default=1, validator=_positive_or_none)
    status: int = attrs.field(default=500, validator=_status)
    description: str | None = None
    retry_after: float | None = attrs.field(default=None, validator=_retry_after)
    json_body: bool = True
    size: int | None = attrs.field(default=None, validator=_positive_or_none)
    interval: float = attrs.field(default=1.0, validator=_retry_after)
    bytes_sent: int = 0
    hits: int = 0

    @classmethod
    def error(
        cls,
        status: int,
        *,
        description: str | None = None,
        retry_after: float | None = None,
        json_body: bool = True,
        method: str | None = "getUpdates",
        times: int | None = 1,
    ) -> BotApiFault:
        """Answer with an HTTP error (429 with ``retry_after``, 401, 409, 502...)."""
        return cls(
            action=BotApiFaultAction.ERROR,
            status=status,
            description=description,
            retry_after=retry_after,
            json_body=json_body,
            method=method,
            times=times,
        )

    @classmethod
    def stall(cls, *, method: str | None = "getUpdates", times: int | None = 1) -> BotApiFault:
        """Never answer."""
        return cls(action=BotApiFaultAction.STALL, method=method, times=times)

    @classmethod
    def drop(cls, *, method: str | None = "getUpdates", times: int | None = 1) -> BotApiFault:
        """Close the connection without answering."""
        return cls(action=BotApiFaultAction.DROP, method=method, times=times)

    @classmethod
    def close_mid_response(
        cls, *, method: str | None = "getUpdates", times: int | None = 1
    ) -> BotApiFault:
        """Send half a response, then close the connection."""
        return cls(action=BotApiFaultAction.CLOSE_MID_RESPONSE, method=method, times=times)

    @classmethod
    def huge_body(
        cls, size: int | None = None, *, method: str | None = "getUpdates", times: int | None = 1
    ) -> BotApiFault:
        """Answer a JSON body padded with ``size`` blanks; ``None``: a body that never ends."""
        return cls(action=BotApiFaultAction.HUGE_BODY, size=size, method=method, times=times)

    @classmethod
    def deep_json(
        cls, depth: int = 100_000, *, method: str | None = "getUpdates", times: int | None = 1
    ) -> BotApiFault:
        """Answer ``{"ok": true, "result": [[[...]]]}``, ``depth`` arrays deep."""
        return cls(action=BotApiFaultAction.DEEP_JSON, size=depth, method=method, times=times)

    @classmethod
    def slow_body(
        cls,
        size: int | None = None,
        *,
        interval: float = 1.0,
        method: str | None = "getUpdates",
        times: int | None = 1,
    ) -> BotApiFault:
        """Answer a JSON body one blank every ``interval`` seconds; ``None``: it never ends."""
        return cls(
            action=BotApiFaultAction.SLOW_BODY,
            size=size,
            interval=interval,
            method=method,
            times=times,
        )

    @property
    def exhausted(self) -> bool:
        """Whether it has been applied ``times`` times."""
        return self.times is not None and self.hits >= self.times

    def _matches(self, method: str) -> bool:
        return not self.exhausted and (self.method is None or self.method.lower() == method)


@attrs.frozen
class BotApiRequest:
    """One API request the server received.

    Attributes:
        method: The API method, as sent.
        params: Its parameters (query string and body merged; values from a
            query string are strings).
        connection: The number of the connection it came on (1, 2, ...).
        reused: Whether an earlier request had come on the same connection.
        time: ``trio.current_time()`` when it arrived.
        fault: The fault applied to it, if any.
    """

    method: str
    params: Mapping[str, Any]
    connection: int
    reused: bool
    time: float
    fault: BotApiFaultAction | None = None


# --------------------------------------------------------------------------- Bot API


@attrs.define(eq=False)
class _Poll:
    """A getUpdates request waiting for updates."""

    wake: trio.Event = attrs.Factory(trio.Event)
    superseded: bool = False


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _BadRequest(f"Bad Request: field {name!r} must be a number") from None


class _BadRequest(Exception):
    pass


class BotApiServer:
    """A loopback Bot API; open it with :func:`open_botapi_server`.

    Everything is called from trio code in the same ``trio.run`` as the server.

    Attributes:
        token: The bot token the server accepts (``/bot<token>/<method>``);
            assign a new one to revoke the old (its requests get 401).
        webhook_url: The webhook set with ``setWebhook``; while set,
            ``getUpdates`` answers 409. Assign to change it.
        calls: Requests received, by method name (as sent).
        requests: The last requests received (a bounded history).
        delivered: How many times each update was sent in a ``getUpdates``
            answer, by ``update_id``.
        sent_messages: What ``sendMessage`` received, in order.
        polls_waiting: ``getUpdates`` requests currently waiting for updates.
    """

    def __init__(
        self,
        *,
        token: str,
        host: str,
        port: int,
        tls: bool,
        first_update_id: int,
        keepalive_timeout: float | None,
        history: int,
    ) -> None:
        """Create a server that is not listening yet (see :func:`open_botapi_server`)."""
        self.token = token
        self.webhook_url: str | None = None
        self.calls: Counter[str] = Counter()
        self.requests: deque[BotApiRequest] = deque(maxlen=history)
        self.delivered: Counter[int] = Counter()
        self.sent_messages: list[dict[str, Any]] = []
        self.polls_waiting = 0
        self._tls = tls
        self._ssl_context: ssl.SSLContext | None = None
        self._keepalive_timeout = keepalive_timeout
        self._listener = RestartableListener(host, port, "BotApiServer", self._serve)
        self._queue: deque[dict[str, Any]] = deque()
        self._next_update_id = first_update_id
        self._ids_reset = False
        self._faults: list[BotApiFault] = []
        self._polls: set[_Poll] = set()
        self._responders: dict[str, BotApiResponder] = {}
        self._message_ids = itertools.count(1)
        self._changed = trio.Event()

    # ----------------------------------------------------------------- addresses

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._listener.host

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._listener.port

    @property
    def url(self) -> str:
        """``http(s)://host:port``, the origin of the API."""
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The base of every method's URL: ``<url>/bot<token>/``."""
        return f"{self.url}/bot{self.token}/"

    def method_url(self, method: str) -> str:
        """The URL of one API method, such as ``getUpdates``."""
        return self.api_url + method

    # ----------------------------------------------------------------- connections

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far."""
        return self._listener.connections_accepted

    @property
    def live_connections(self) -> int:
        """TCP connections open now."""
        return len(self._listener.connections)

    def drop_connections(self) -> int:
        """Close every open connection at once, without answering what is pending.

        Returns:
            How many connections were closed.
        """
        return self._listener.cut()

    # ----------------------------------------------------------------- updates

    def push(self, **fields: Any) -> int:
        """Queue an update with the next ``update_id`` and wake waiting polls.

        Args:
            fields: The update's content, such as ``message={"text": "hi"}``.

        Returns:
            The new update's ``update_id``.
        """
        update_id = self._next_update_id
        self._next_update_id += 1
        self._queue.append({"update_id": update_id, **fields})
        for poll in self._polls:
            poll.wake.set()
        self._notify()
        return update_id

    def push_many(self, count: int) -> list[int]:
        """Queue ``count`` text-message updates; returns their ids."""
        ids = []
        for _ in range(count):
            number = self._next_update_id
            ids.append(self.push(message={"message_id": number, "text": f"update {number}"}))
        return ids

    def reset_update_ids(self, first_update_id: int = 1) -> None:
        """Start the numbering of updates again at ``first_update_id``, as a server that lost it.

        Like such a server, from then on it ignores an offset above every id
        it has issued since (confirming nothing), so a client that does not
        follow the new ids gets the same updates again on every poll.
        """
        self._next_update_id = first_update_id
        self._ids_reset = True

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The updates not confirmed yet, oldest first."""
        return list(self._queue)

    @property
    def next_update_id(self) -> int:
        """The ``update_id`` the next pushed update gets."""
        return self._next_update_id

    # ----------------------------------------------------------------- behaviour

    def inject(self, fault: BotApiFault) -> BotApiFault:
        """Apply ``fault`` to the next matching requests (after those injected before).

        Returns:
            The fault, whose ``hits`` tells how often it was applied.
        """
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every fault not exhausted yet."""
        self._faults.clear()

    def set_responder(self, method: str, responder: BotApiResponder | None) -> None:
        """Answer ``method`` (case-insensitive) with ``responder``; ``None`` removes it.

        A responder returns the ``result`` of an ``ok`` answer, or a
        :class:`BotApiFault` made with :meth:`BotApiFault.error` to answer an error. It
        replaces the built-in answer, ``getUpdates``'s included (then no
        long poll, no offset handling: the responder answers at once).
        """
        if responder is None:
            self._responders.pop(method.lower(), None)
        else:
            self._responders[method.lower()] = responder

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` is true, checked whenever the server's state changes.

        Wrap it in ``trio.fail_after``: it has no timeout of its own.
        """
        while not condition():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ----------------------------------------------------------------- serving

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._tls:
            self._ssl_context = await trio.to_thread.run_sync(loopback_server_ssl_context)
        await self._listener.run(task_status=task_status)

    async def _serve(self, raw: trio.SocketStream, number: int) -> None:
        stream: trio.abc.Stream = raw
        self._notify()
        try:
            if self._ssl_context is not None:
                tls = trio.SSLStream(raw, self._ssl_context, server_side=True)
                with trio.fail_after(10):
                    await tls.do_handshake()
                stream = tls
            await self._serve_http(stream, number)
        except (PeerGone, trio.TooSlowError, *STREAM_ERRORS, h11.ProtocolError) as exc:
            log.debug("connection %d: %r", number, exc)
        finally:
            self._notify()

    async def _serve_http(self, stream: trio.abc.Stream, number: int) -> None:
        conn = h11.Connection(h11.SERVER)
        served = 0
        while True:
            request: tuple[h11.Request, bytes] | None = None
            if served and self._keepalive_timeout is not None:
                with trio.move_on_after(self._keepalive_timeout) as idle:
                    request = await _next_request(conn, stream)
                if idle.cancelled_caught:
                    return  # idle too long: close without a word, as nginx does
            else:
                request = await _next_request(conn, stream)
            if request is None:
                return
            await self._answer(conn, stream, request, number, reused=served > 0)
            served += 1
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _answer(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        request: tuple[h11.Request, bytes],
        number: int,
        *,
        reused: bool,
    ) -> None:
        head, body = request
        parts = urlsplit(head.target.decode("ascii", "replace"))
        prefix, _, method = parts.path.rpartition("/")
        refusal: tuple[int, dict[str, Any]] | None = None
        try:
            params = _params(parts.query, head, body)
        except _BadRequest as exc:
            params, refusal = {}, (400, _error(400, str(exc)))
        if not prefix.startswith("/bot") or not method:
            refusal = 404, _error(404)
        elif prefix != f"/bot{self.token}":
            refusal = 401, _error(401)
        fault = self._take_fault(method.lower()) if refusal is None else None
        self.calls[method] += 1
        self.requests.append(
            BotApiRequest(
                method=method,
                params=params,
                connection=number,
                reused=reused,
                time=trio.current_time(),
                fault=None if fault is None else fault.action,
            )
        )
        self._notify()
        if refusal is not None:
            await _send_json(conn, stream, *refusal)
        elif fault is not None:
            await self._apply(fault, conn, stream)
        else:
            status, payload = await self._dispatch(method.lower(), params)
            await _send_json(conn, stream, status, payload)

    def _take_fault(self, method: str) -> BotApiFault | None:
        for fault in self._faults:
            if fault._matches(method):
                fault.hits += 1
                if fault.exhausted:
                    self._faults.remove(fault)
                return fault
        return None

    async def _apply(
        self, fault: BotApiFault, conn: h11.Connection, stream: trio.abc.Stream
    ) -> None:
        if fault.action is BotApiFaultAction.ERROR:
            if fault.json_body:
                payload = _error(fault.status, fault.description, fault.retry_after)
                await _send_json(conn, stream, fault.status, payload)
            else:
                text = fault.description or _DESCRIPTIONS.get(fault.status, "Error")
                await _send(conn, stream, fault.status, text.encode(), b"text/plain")
        elif fault.action is BotApiFaultAction.STALL:
            # answer nothing, but notice when the client gives up, as a real server does
            while await stream.receive_some(65536):
                pass
            raise PeerGone
        elif fault.action is BotApiFaultAction.DROP:
            raise PeerGone
        elif fault.action is BotApiFaultAction.HUGE_BODY:
            await _send_huge_body(fault, conn, stream)
        elif fault.action is BotApiFaultAction.SLOW_BODY:
            await _send_slow_body(fault, conn, stream)
        elif fault.action is BotApiFaultAction.DEEP_JSON:
            depth = fault.size or 1
            body = b'{"ok":true,"result":[' + b"[" * depth + b"]" * depth + b"]}"
            await _send(conn, stream, 200, body, b"application/json")
        else:
            body = json.dumps({"ok": True, "result": []}).encode() + b" " * 64
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            )
            await stream.send_all(conn.send(h11.Data(data=body[: len(body) // 2])))
            raise PeerGone

    async def _dispatch(self, method: str, params: dict[str, Any]) -> tuple[int, Any]:
        try:
            responder = self._responders.get(method)
            if responder is None and method == "getupdates":
                return await self._get_updates(params)
            responder = responder or self._builtin(method)
            if responder is None:
                return 404, _error(404)
            result = responder(params)
        except _BadRequest as exc:
            return 400, _error(400, str(exc))
        if isinstance(result, BotApiFault):
            return result.status, _error(result.status, result.description, result.retry_after)
        return 200, {"ok": True, "result": result}

    def _builtin(self, method: str) -> BotApiResponder | None:
        return {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
        }.get(method)

    async def _get_updates(self, params: dict[str, Any]) -> tuple[int, Any]:
        if self.webhook_url is not None:
            return 409, _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(_number(params, "offset", 0))
        limit = min(100, max(1, int(_number(params, "limit", 100))))
        timeout = max(0.0, _number(params, "timeout", 0))
        self._confirm(offset)
        # Telegram keeps one long poll per bot: a newer one ends the older with 409
        for older in self._polls:
            older.superseded = True
            older.wake.set()
        poll = _Poll()
        self._polls.add(poll)
        self.polls_waiting += 1
        self._notify()
        deadline = trio.current_time() + timeout
        try:
            while True:
                if poll.superseded:
                    return 409, _error(409)
                batch = list(itertools.islice(self._queue, limit))
                if batch or trio.current_time() >= deadline:
                    break
                with trio.move_on_at(deadline):
                    await poll.wake.wait()
                poll.wake = trio.Event()
        finally:
            self._polls.discard(poll)
            self.polls_waiting -= 1
            self._notify()
        for update in batch:
            self.delivered[update["update_id"]] += 1
        return 200, {"ok": True, "result": batch}

    def _confirm(self, offset: int) -> None:
        if self._ids_reset and offset > self._next_update_id:
            return  # an offset from before the reset
        if offset > 0:
            while self._queue and self._queue[0]["update_id"] < offset:
                self._queue.popleft()
        elif offset < 0:
            while len(self._queue) > -offset:
                self._queue.popleft()

    def _get_me(self, params: dict[str, Any]) -> Any:
        bot_id = int(self.token.split(":", 1)[0]) if self.token[:1].isdigit() else 1
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Loopback",
            "username": "loopback_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _send_message(self, params: dict[str, Any]) -> Any:
        if "chat_id" not in params or "text" not in params:
            raise _BadRequest("Bad Request: chat_id and text are required")
        self.sent_messages.append(dict(params))
        self._notify()
        return {
            "message_id": next(self._message_ids),
            "date": 0,
            "chat": {"id": params["chat_id"], "type": "private"},
            "text": params["text"],
        }

    def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url") or None
        self.webhook_url = None if url is None else str(url)
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook_url = None
        if str(params.get("drop_pending_updates", "")).lower() in ("true", "1"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        return {"url": self.webhook_url or "", "pending_update_count": len(self._queue)}


def _error(
    status: int, description: str | None = None, retry_after: float | None = None
) -> dict[str, Any]:
    text = description or _DESCRIPTIONS.get(status, "Error")
    if status == 429 and retry_after is not None and description is None:
        text = f"Too Many Requests: retry after {retry_after:g}"
    payload: dict[str, Any] = {"ok": False, "error_code": status, "description": text}
    if retry_after is not None:
        payload["parameters"] = {"retry_after": retry_after}
    return payload


def _params(query: str, head: h11.Request, body: bytes) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    content_type = dict(head.headers).get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type == b"application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise _BadRequest("Bad Request: can't parse JSON body") from None
        if not isinstance(decoded, dict):
            raise _BadRequest("Bad Request: the JSON body must be an object")
        params.update(decoded)
    elif content_type == b"application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


async def _next_request(
    conn: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request, bytes] | None:
    """The next request and its body, or ``None`` at a clean end of the connection."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data and head is None and conn.their_state is h11.IDLE:
                return None
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        else:  # PAUSED cannot happen before we answer
            raise PeerGone


async def _begin_padded_body(conn: h11.Connection, stream: trio.abc.Stream) -> None:
    """Send a 200's headers and the opening of a chunked JSON answer, to be padded."""
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK")))
    await stream.send_all(conn.send(h11.Data(data=b'{"ok":true,"result":[')))


async def _end_padded_body(conn: h11.Connection, stream: trio.abc.Stream) -> None:
    await stream.send_all(conn.send(h11.Data(data=b"]}")) + conn.send(h11.EndOfMessage()))


async def _send_huge_body(
    fault: BotApiFault, conn: h11.Connection, stream: trio.abc.Stream
) -> None:
    await _begin_padded_body(conn, stream)
    blanks = b" " * 65536
    left = fault.size
    while left is None or left > 0:
        chunk = blanks if left is None or left >= len(blanks) else blanks[:left]
        await stream.send_all(conn.send(h11.Data(data=chunk)))
        fault.bytes_sent += len(chunk)
        if left is not None:
            left -= len(chunk)
    await _end_padded_body(conn, stream)


async def _send_slow_body(
    fault: BotApiFault, conn: h11.Connection, stream: trio.abc.Stream
) -> None:
    await _begin_padded_body(conn, stream)
    left = fault.size
    while left is None or left > 0:
        await trio.sleep(fault.interval)
        await stream.send_all(conn.send(h11.Data(data=b" ")))
        fault.bytes_sent += 1
        if left is not None:
            left -= 1
    await _end_padded_body(conn, stream)


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def _send(
    conn: h11.Connection, stream: trio.abc.Stream, status: int, body: bytes, content_type: bytes
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
    data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _send_json(
    conn: h11.Connection, stream: trio.abc.Stream, status: int, payload: Any
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await _send(conn, stream, status, body, b"application/json")


@contextlib.asynccontextmanager
async def open_botapi_server(
    *,
    token: str = "123456:loopback-token",
    host: str = "127.0.0.1",
    port: int = 0,
    tls: bool = False,
    first_update_id: int = 1,
    keepalive_timeout: float | None = None,
    history: int = 1000,
) -> AsyncIterator[BotApiServer]:
    """Run a loopback Bot API for the duration of an ``async with`` block.

    Args:
        token: The bot token it accepts.
        host: The address to listen on.
        port: The port; 0 picks a free one (see ``server.port``).
        tls: Serve https with the bundled loopback certificate (trust it
            with :func:`loopback_client_ssl_context`).
        first_update_id: The ``update_id`` of the first pushed update.
        keepalive_timeout: Close a keep-alive connection silently after it
            has been idle this many seconds (``None``: keep it open).
        history: How many requests ``server.requests`` remembers.

    Yields:
        The listening server. Leaving the block closes every connection.
    """
    if keepalive_timeout is not None and not keepalive_timeout > 0:
        raise ValueError("open_botapi_server: field 'keepalive_timeout' must be > 0 or None")
    if history < 0:
        raise ValueError("open_botapi_server: field 'history' must be >= 0")
    server = BotApiServer(
        token=token,
        host=host,
        port=port,
        tls=tls,
        first_update_id=first_update_id,
        keepalive_timeout=keepalive_timeout,
        history=history,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server._run)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
