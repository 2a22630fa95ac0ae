"""Secrets out of everything an operator sees: the one place where they are redacted.

Bot tokens sit in every Bot API URL, and a worker also holds api_hashes, session
strings, proxy passwords, WebSocket tokens and auth headers. None of them may reach
a log record (at any level, from any logger a worker drives), a repr, an exception
message, a failure kept in history, a snapshot or an endpoint. Two mechanisms, both
here:

- by structure, whatever the value: the ``/bot<token>/`` path segment of a URL (and
  a Telegram-shaped token anywhere), the password of a URL's userinfo, and the value
  after a secret name (a query parameter ``token=...``, a header
  ``Authorization: Bearer ...``, a field ``api_hash='...'`` in a repr or
  ``"bot_auth_token": "..."`` in Pyrogram's TL dumps);
- by value: each worker configuration registers its secrets when it is constructed
  (:func:`register_secret`, as text and in the hex and base64 forms they may travel
  in), and every occurrence of one is replaced.

Where it is applied: configurations' reprs and errors (their own fields), every
record of the loggers workers drive (:data:`REDACTED_LOGGERS`, through the log record
factory, so it holds for any handler, any child logger and any level, installed once
by the first configuration), and every exception a worker hands over to its
supervisor or keeps in a history (:func:`redact_exception`, in place, along its
causes), so snapshots, events, ``/tree``, ``/metrics`` and structlog output see only
redacted text.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "REDACTED",
    "REDACTED_LOGGERS",
    "SecretFilter",
    "install_log_redaction",
    "redact",
    "redact_exception",
    "register_secret",
    "register_secret_names",
]

#: What a secret is replaced with.
REDACTED: Final = "<redacted>"

#: The loggers whose records are redacted (each with its children): the workers' own,
#: the supervisor's, and those of the libraries the workers drive.
REDACTED_LOGGERS: Final = (
    "workers",
    "supervisor",
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "socks",
    "pyrogram",
    "trio-websocket",
    "trio_websocket",
    "trio_asyncio",
    "asyncio",
)

#: Names whose value is a secret, in a query string, a header, a repr or a TL dump.
DEFAULT_SECRET_NAMES: Final = (
    "access_token",
    "api_hash",
    "api_key",
    "apikey",
    "auth_key",
    "auth_token",
    "authorization",
    "bot_auth_token",
    "bot_token",
    "client_secret",
    "cookie",
    "passwd",
    "password",
    "proxy-authorization",
    "refresh_token",
    "secret",
    "session_string",
    "set-cookie",
    "token",
    "x-api-key",
    "x-auth-token",
)

# shorter registered values would match ordinary words
_MIN_SECRET: Final = 4

_BOT_PATH = re.compile(r"(?<=/bot)[0-9]+(?::|%3[Aa])[A-Za-z0-9_-]+")
# a Telegram bot token on its own: "<bot id>:<35 characters>"
_BOT_TOKEN = re.compile(r"(?<![\w:])[0-9]{5,}:[A-Za-z0-9_-]{30,}(?![\w-])")
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"<>]*:)[^/\s@'\"<>]+(?=@)")
_SCHEMES = r"(?:(?:Bearer|Basic|Bot|Token|Digest|OAuth)\s+)?"


@attrs.define(eq=False)
class _Registry:
    """The secret values and names known so far (process-wide, thread-safe to update)."""

    names: set[str] = attrs.Factory(lambda: set(DEFAULT_SECRET_NAMES))
    # a value's first _MIN_SECRET characters -> the values, longest first
    by_prefix: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    named: re.Pattern[str] | None = None
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def pattern(self) -> re.Pattern[str]:
        named = self.named
        if named is None:
            alternatives = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
            named = self.named = re.compile(
                rf"((?<![\w-])(?:{alternatives})(?![\w-])"
                rf"(?:[\"']\s*,|[\"']?\s*[:=])\s*(?:b(?=[\"']))?[\"']?{_SCHEMES})"
                r"([^\"'\s,;&)}\]<>]+)",
                re.IGNORECASE,
            )
        return named

    def add(self, value: str) -> None:
        if len(value) < _MIN_SECRET:
            return
        prefix = value[:_MIN_SECRET]
        with self.lock:
            known = self.by_prefix.get(prefix, ())
            if value not in known:
                self.by_prefix[prefix] = tuple(sorted((*known, value), key=len, reverse=True))


_registry = _Registry()


def register_secret_names(*names: str) -> None:
    """Treat the value after each name (a query parameter, a header, a field) as a secret."""
    new = {name.lower() for name in names if name} - _registry.names
    if new:
        with _registry.lock:
            _registry.names |= new
            _registry.named = None


def is_secret_name(name: str) -> bool:
    """Whether the value after ``name`` (a parameter, a header, a field) is redacted."""
    return name.lower() in _registry.names


def register_secret(value: str | bytes | None) -> None:
    """Redact ``value`` wherever it appears from now on (text, bytes, hex and base64 forms).

    Values shorter than 4 characters are not registered (they would match ordinary
    text); structure still redacts them where they stand in a URL or after a name.
    """
    if value is None:
        return
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if isinstance(value, str):
        _registry.add(value)
    forms = {
        raw.decode("latin-1"),  # as it stands in bytes
        repr(raw)[2:-1],  # as it stands in a repr of bytes
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    for form in forms:
        _registry.add(form)


def register_url_secrets(url: str) -> None:
    """Register a URL's secrets: its password, ``/bot<token>`` and secret query values."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
        username = parts.username
    except ValueError:
        return
    if password:
        for form in {password, urllib.parse.unquote(password)}:
            register_secret(form)
        # proxies carry it as Basic credentials
        user = urllib.parse.unquote(username or "")
        register_secret(f"{user}:{urllib.parse.unquote(password)}")
    for segment in parts.path.split("/"):
        if segment.startswith("bot") and len(segment) > 3:
            register_secret(segment[3:])
            register_secret(urllib.parse.unquote(segment[3:]))
    names = _registry.names
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
        if name.lower() in names:
            register_secret(value)


def register_header_secret(value: str) -> None:
    """Register a secret header's value, and its credentials without the scheme."""
    register_secret(value)
    scheme, _, credentials = value.partition(" ")
    if credentials and scheme.isalpha():
        register_secret(credentials.strip())


def _registered(text: str) -> str:
    table = _registry.by_prefix
    if not table or len(text) < _MIN_SECRET:
        return text
    pieces: list[str] = []
    last = i = 0
    end = len(text) - _MIN_SECRET
    while i <= end:
        candidates = table.get(text[i : i + _MIN_SECRET])
        if candidates is not None:
            found = next((c for c in candidates if text.startswith(c, i)), None)
            if found is not None:
                pieces += (text[last:i], REDACTED)
                i = last = i + len(found)
                continue
        i += 1
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def redact(text: str) -> str:
    """``text`` with every secret replaced by :data:`REDACTED`.

    By structure: ``/bot<token>`` in a URL path, a Telegram-shaped token, a URL's
    userinfo password, and the value after a secret name (:func:`register_secret_names`:
    ``token=...``, ``Authorization: Bearer ...``, ``api_hash='...'``); by value: every
    registered secret.
    """
    if not text:
        return text
    text = _BOT_PATH.sub(REDACTED, text)
    text = _BOT_TOKEN.sub(REDACTED, text)
    text = _USERINFO.sub(rf"\1{REDACTED}", text)
    text = _registry.pattern().sub(rf"\1{REDACTED}", text)
    return _registered(text)


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for bytes (read as latin-1, so every byte survives)."""
    text = data.decode("latin-1")
    clean = redact(text)
    return data if clean == text else clean.encode("latin-1")


def redact_repr(value: Any) -> str:
    """``repr(value)``, redacted: for configurations' ``attrs.field(repr=...)``."""
    return redact(repr(value))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact_bytes(value)
    return value


def _redact_one(error: BaseException, pending: list[BaseException]) -> None:
    args = error.args
    cleaned = tuple(_clean(a) for a in args)
    if cleaned != args:
        # attrs' frozen exceptions refuse setattr: the slot is BaseException's
        BaseException.args.__set__(error, cleaned)  # type: ignore[attr-defined]
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [_clean(n) for n in notes]
    kind: Any = type(error)
    fields = attrs.fields(kind) if attrs.has(kind) else ()
    for field in fields:
        value = getattr(error, field.name, None)
        if isinstance(value, str | bytes):
            clean = _clean(value)
            if clean is not value and clean != value:
                object.__setattr__(error, field.name, clean)
        elif isinstance(value, BaseException):
            pending.append(value)
    if not fields:
        # an exception whose str is built from its own attributes, not its args
        for name, value in list(vars(error).items()):
            if isinstance(value, str | bytes) and _clean(value) != value:
                object.__setattr__(error, name, _clean(value))
    if isinstance(error, BaseExceptionGroup):
        pending.extend(error.exceptions)
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            pending.append(linked)


def redact_exception(error: BaseException | None) -> None:
    """Redact an exception in place: its args, notes and fields, along its causes.

    Called on every exception a worker hands to its supervisor and keeps in a
    history, so its ``str``, ``repr`` and traceback show no secret wherever they go.
    """
    seen: set[int] = set()
    pending = [] if error is None else [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _redact_one(current, pending)


# --------------------------------------------------------------------------- logging

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def _redact_record(record: logging.LogRecord, *, extras: bool) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format: keep it, without what it would show
        record.msg = redact(str(record.msg))
        if record.args:
            record.args = tuple(redact(repr(a)) for a in record.args)
    else:
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        redact_exception(record.exc_info[1])
        # formatters use this text as it is; it also covers what the exception's
        # own __str__ builds from places redact_exception does not reach
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    if extras:
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str | bytes):
                setattr(record, name, _clean(value))


class SecretFilter(logging.Filter):
    """A logging filter that redacts a record in place (message, exception, extra fields).

    The workers install redaction for their loggers already
    (:func:`install_log_redaction`); add this filter to a handler of your own to
    have it for every record that handler emits.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``; always let it through."""
        _redact_record(record, extras=True)
        return True


def _driven(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in REDACTED_LOGGERS)


def install_log_redaction() -> None:
    """Redact every record of :data:`REDACTED_LOGGERS` (and children), for any handler.

    Idempotent; the worker configurations call it. It wraps the log record factory,
    the one place every record passes through whatever logger made it and whichever
    handlers take it (a filter on a logger sees only that logger's own records, not
    its children's, and a filter on a handler only that handler's). A record is
    redacted when it is made, so only records of enabled levels cost anything. Extra
    fields are set after the factory: the workers' and supervisor's own extras are
    built from redacted values; use :class:`SecretFilter` for others'.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "_redacts_secrets", False):
        return
    factory = _make_factory(current)
    logging.setLogRecordFactory(factory)


def _make_factory(inner: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        if _driven(record.name):
            _redact_record(record, extras=False)
        return record

    factory._redacts_secrets = True  # type: ignore[attr-defined]
    return factory
