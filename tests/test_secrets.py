"""Tests that no secret leaves the process: every worker through its failures, all captured.

Each worker runs against the project's own loopback servers with recognisable
secrets (a bot token, an api_hash, a session string and its auth key, a proxy
password, a WebSocket query token and a bearer header), with every logger at DEBUG
propagating to a handler on the root logger. Everything an operator or a log
shipper could see is collected (log records with their tracebacks and fields,
reprs, exception messages, handler failures, events, the snapshot's JSON, the tree
view, the metrics, structlog output, a CLI run's stderr) and searched for each
secret and its hex and base64 forms.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import specs
import supervisor
import workers
from specs import SupervisorSpec
from supervisor import events
from workers import redact
from workers.testing import (
    BotApiFault,
    ConnectProxy,
    MTProtoServer,
    RpcFailure,
    WebSocketServerBehaviour,
    WebSocketTestServer,
    loopback_client_ssl_context,
    open_botapi_server,
    open_connect_proxy,
)

from .helpers import Recorder

TOKEN = "123456:SECRET-bot-token-AAAA"
PYROGRAM_BOT_TOKEN = "654321:SECRET-mtproto-bot-BBBB"
API_HASH = "deadbeef" * 4
PROXY_PASSWORD = "hunter2-proxy"
WS_TOKEN = "ws-query-token-QQQQ"
BEARER = "bearer-header-secret-HHHH"
REPO = Path(__file__).resolve().parent.parent
#: How long a test waits for what must happen (a hang fails, it does not block CI).
PATIENCE = 10.0
QUICK = specs.Backoff(wait_initial=0.01, wait_max=0.05, wait_jitter=0)


def forms(secret: str | bytes) -> set[str]:
    """A secret as it could travel: as text, in hex, in base64."""
    raw = secret.encode() if isinstance(secret, str) else secret
    found = {
        raw.hex(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    if isinstance(secret, str):
        found.add(secret)
    else:
        found.add(repr(secret)[2:-1])
    return found


class Capture(logging.Handler):
    """Everything every record would show: formatted text, traceback, fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.format(record))
        fields = {k: v for k, v in vars(record).items() if k not in ("exc_info", "msg")}
        self.lines.append(repr(fields))


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Capture]:
    """Every logger at DEBUG, propagating to a capturing handler on the root logger."""
    capture = Capture()
    root = logging.getLogger()
    saved = root.level
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    settings = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
        lg.disabled = False
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    caplog.set_level(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved)
        for lg, level, propagate, disabled in settings:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
        capture.lines.extend(r.getMessage() for r in caplog.records)
        capture.lines.append(caplog.text)


def assert_clean(texts: list[str], secrets: list[str | bytes]) -> None:
    """No secret, in any of its forms, is in any of the texts."""
    blob = "\n".join(texts)
    for secret in secrets:
        for form in forms(secret):
            assert form not in blob, f"{form!r} leaked: ...{_around(blob, form)}..."


def _around(blob: str, form: str) -> str:
    at = blob.index(form)
    return blob[max(0, at - 150) : at + len(form) + 50]


def seen(sup: supervisor.SupervisorHandle, recorder: Recorder) -> list[str]:
    """What the supervisor shows: snapshot JSON, tree view, metrics, events, structlog."""
    import structlog

    from supervisor._health import Metrics

    snapshot = sup.snapshot()
    metrics = Metrics(sup)
    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        processors=[structlog.processors.JSONRenderer(default=str)],
    )
    hook = supervisor.structlog_hook(logger)
    for event in recorder.events:
        metrics(event)
        hook(event)
    return [
        json.dumps(snapshot.to_dict()),
        supervisor.render_text(snapshot),
        metrics.exposition().decode(),
        out.getvalue(),
        *(repr(e) for e in recorder.events),
        *(repr(e) for e in sup.history),
    ]


def exits(recorder: Recorder) -> list[BaseException | None]:
    """The failures the children exited with, or failed to start (restart) with."""
    return [
        e.reason.exception if isinstance(e, events.ChildExited) else e.error
        for e in recorder.events
        if isinstance(e, events.ChildExited | events.StartFailed)
    ]


@asynccontextmanager
async def observed(
    *children: specs.ChildSpec, recorder: Recorder
) -> AsyncIterator[supervisor.SupervisorHandle]:
    """The children under a quickly restarting supervisor, logging and recording its events."""
    spec = SupervisorSpec(children=list(children), intensity=100, backoff=QUICK)
    async with supervisor.open_supervisor(spec, hooks=[recorder, supervisor.logging_hook]) as sup:
        yield sup


async def until(condition: Any) -> None:
    """Wait (at most PATIENCE seconds) until ``condition()`` holds."""
    with trio.fail_after(PATIENCE):
        while not condition():
            with trio.move_on_after(0.01):
                await trio.sleep_forever()


# --------------------------------------------------------------- the redactor's rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://api.telegram.org/bot123:AAbb-_x/getUpdates?offset=3",
            "GET https://api.telegram.org/bot<redacted>/getUpdates?offset=3",
        ),
        ("http://127.0.0.1/bot99%3Aabc/getMe", "http://127.0.0.1/bot<redacted>/getMe"),
        ("http://user:pw-x@proxy:3128", "http://user:<redacted>@proxy:3128"),
        ("wss://h/feed?x=1&token=abc&y=2", "wss://h/feed?x=1&token=<redacted>&y=2"),
        ("wss://h/feed?access_token=abc", "wss://h/feed?access_token=<redacted>"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer <redacted>"),
        ("(b'authorization', b'Basic dXNlcjpw')", "(b'authorization', b'Basic <redacted>')"),
        ("api_hash='0123abcd', api_id=5", "api_hash='<redacted>', api_id=5"),
        ('"bot_auth_token": "1:x"', '"bot_auth_token": "<redacted>"'),
        ("token 1234567:" + "A" * 35 + " here", "token <redacted> here"),
        ("http://example.org/bottles/1", "http://example.org/bottles/1"),
        ("ws://127.0.0.1:8080/feed", "ws://127.0.0.1:8080/feed"),
        ("the token, then", "the token, then"),
    ],
)
def test_structure_redacts_tokens_userinfo_and_named_values(text: str, expected: str) -> None:
    """Secrets are found by where they stand, whatever their value; other text is kept."""
    assert redact(text) == expected


def test_registered_secrets_are_redacted_in_every_form() -> None:
    """A registered value is replaced as text, in bytes, hex and base64."""
    secret = b"\x01\x02registered-key\xff"
    workers.register_secret(secret)
    workers.register_secret("plain-registered-secret")
    for form in forms(secret) | {"plain-registered-secret"}:
        assert redact(f"x {form} y") == "x <redacted> y"


def test_a_named_secret_of_a_config_is_redacted() -> None:
    """A query parameter a WebSocket config marks secret is redacted by name too."""
    workers.WebSocketConfig(url="ws://127.0.0.1:9/", secret_names=("ticket",))
    assert redact("ws://h/?ticket=zzz9") == "ws://h/?ticket=<redacted>"


def test_exceptions_are_redacted_in_place_along_their_causes() -> None:
    """redact_exception cleans args, attrs fields and the cause chain; identity is kept."""
    inner = ValueError(f"for url 'http://x/bot{TOKEN}/getMe'")
    outer = workers.Crashed(exception=inner)
    outer.__cause__ = RuntimeError(f"http://u:{PROXY_PASSWORD}@p:1")
    workers.redact_exception(outer)
    assert_clean([repr(outer), str(outer.__cause__), str(inner)], [TOKEN, PROXY_PASSWORD])
    assert outer.exception is inner
    assert "bot<redacted>" in str(inner)


def test_the_filter_redacts_records_of_any_logger_with_their_extras() -> None:
    """SecretFilter on a handler of one's own cleans message, args, traceback and extras."""
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "at %s", (f"/bot{TOKEN}/",), None)
    record.__dict__["target"] = f"http://u:{PROXY_PASSWORD}@p:1"
    assert workers.SecretFilter().filter(record)
    assert_clean([record.getMessage(), record.__dict__["target"]], [TOKEN, PROXY_PASSWORD])


# --------------------------------------------------------------- configurations


def test_configs_show_no_secret_in_repr_or_error() -> None:
    """reprs, and the errors of mistyped schemes and bad values, name fields, not secrets."""
    texts: list[str] = []
    polling = workers.PollingConfig(
        url=f"https://api.telegram.org/bot{TOKEN}/getUpdates",
        proxies=[f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128"],
    )
    ws = workers.WebSocketConfig(
        url=f"wss://127.0.0.1:9/feed?token={WS_TOKEN}",
        extra_headers={"Authorization": f"Bearer {BEARER}"},
    )
    pyro = workers.PyrogramConfig(
        name="acct",
        api_id=1,
        api_hash=API_HASH,
        bot_token=PYROGRAM_BOT_TOKEN,
        proxy={"scheme": "socks5", "hostname": "h", "port": 1, "password": PROXY_PASSWORD},
    )
    texts += [repr(polling), repr(ws), repr(pyro), str(polling), str(ws)]
    bad: list[tuple[type[Exception], dict[str, Any]]] = [
        (workers.PollingConfigError, {"url": f"htps://api.telegram.org/bot{TOKEN}/getUpdates"}),
        (workers.PollingConfigError, {"url": f"api.telegram.org/bot{TOKEN}/getUpdates"}),
        (
            workers.PollingConfigError,
            {"url": "https://h/bot1:x/g", "proxies": [f"htp://u:{PROXY_PASSWORD}@h:1"]},
        ),
    ]
    for error, fields in bad:
        with pytest.raises(error) as caught:
            workers.PollingConfig(**fields)
        texts.append(str(caught.value))
    for fields in (
        {"url": f"ws2://h/feed?token={WS_TOKEN}"},
        {"url": "ws://h/", "extra_headers": [("Authorization", f"Bearer {BEARER}".encode())]},
    ):
        with pytest.raises(workers.WebSocketConfigError) as ws_caught:
            workers.WebSocketConfig(**fields)
        texts.append(str(ws_caught.value))
    secrets: dict[str, Any]
    for secrets in ({"api_hash": API_HASH.encode()}, {"api_hash": API_HASH, "bot_token": b"1:x"}):
        with pytest.raises(workers.PyrogramConfigError) as pyro_caught:
            workers.PyrogramConfig(name="a", api_id=1, **secrets)
        texts.append(str(pyro_caught.value))
    assert_clean(texts, [TOKEN, PYROGRAM_BOT_TOKEN, API_HASH, PROXY_PASSWORD, WS_TOKEN, BEARER])
    assert "bot<redacted>" in texts[0]


# --------------------------------------------------------------- the polling worker


async def test_the_polling_worker_leaks_nothing_through_its_failures(captured: Capture) -> None:
    """429, 5xx, a dead proxy, a raise_for_status handler and 401, at DEBUG: no secret shown."""
    recorder = Recorder()
    async with (
        open_botapi_server(tls=True, token=TOKEN) as server,
        open_connect_proxy() as dead,
        open_connect_proxy() as good,
    ):
        await dead.kill()
        authed = [p.url.replace("http://", f"http://user:{PROXY_PASSWORD}@") for p in (dead, good)]

        async def handler(update: workers.Update) -> None:
            response = await worker.api_client.post("noSuchMethod")
            response.raise_for_status()

        worker = workers.PollingLoopWorker(
            workers.PollingConfig(
                url=server.method_url("getUpdates"),
                poll_timeout=0.2,
                proxies=authed,
                verify=loopback_client_ssl_context(),
                max_handler_attempts=2,
            ),
            handler,
            registry=workers.Registry(),
        )
        async with observed(
            worker.child_spec("poller", restart=specs.TRANSIENT), recorder=recorder
        ) as sup:
            await until(lambda: server.calls["getUpdates"] >= 1)
            server.inject(BotApiFault.error(429, retry_after=0.01))
            server.inject(BotApiFault.error(500))
            server.inject(BotApiFault.error(502, json_body=False))
            server.push()
            await until(lambda: worker.stats.skipped == 1 and len(exits(recorder)) >= 4)
            server.token = "654321:another-token"  # the old one is revoked: 401
            await until(lambda: isinstance(exits(recorder)[-1], workers.AuthRevoked))
            texts = seen(sup, recorder)
    kinds = {type(f) for f in exits(recorder)}
    assert {workers.ProxyFailed, workers.FloodWait, workers.ServerError} <= kinds
    assert len(worker.handler_failures) == 2
    texts += [repr(f) for f in worker.handler_failures]
    texts += [str(f.exception) for f in worker.handler_failures]
    texts += [repr(worker.config)]
    texts += captured.lines
    assert any(f"bot<redacted>/{m}" in t for t in texts for m in ("getUpdates", "noSuchMethod"))
    assert {"httpx", "httpcore.connection", "workers.polling", "supervisor"} <= captured.names
    assert_clean(texts, [TOKEN, PROXY_PASSWORD, f"user:{PROXY_PASSWORD}"])


# --------------------------------------------------------------- the WebSocket worker


async def test_the_websocket_worker_leaks_nothing_through_its_failures(
    captured: Capture, websocket_server: WebSocketTestServer
) -> None:
    """Close codes, a 401 and a 503 upgrade rejection, at DEBUG: no token, no header value."""
    recorder = Recorder()
    server = websocket_server
    send, receive = trio.open_memory_channel[workers.WebSocketMessage](100)
    worker = workers.WebSocketSessionWorker(
        workers.WebSocketConfig(
            url=f"{server.url}feed?token={WS_TOKEN}",
            extra_headers={"Authorization": f"Bearer {BEARER}"},
            ping_interval=None,
            connect_timeout=2.0,
        ),
        deliver_to=send,
        registry=workers.Registry(),
    )
    async with observed(worker.child_spec("ws", restart=specs.TRANSIENT), recorder=recorder) as sup:
        for count in (1, 2):
            with trio.fail_after(PATIENCE):
                await server.wait_accepted(count)
                await server.wait_connected(1)
            await server.close_all(4000 + count, "bye")
            await until(lambda: len(exits(recorder)) >= count)  # noqa: B023
        server.behaviour = WebSocketServerBehaviour(reject_status=503)
        await until(lambda: any(isinstance(f, workers.ServerError) for f in exits(recorder)))
        server.behaviour = WebSocketServerBehaviour(reject_status=401)
        await until(lambda: isinstance(exits(recorder)[-1], workers.AuthRevoked))
        session_repr = repr(worker.session)
        texts = seen(sup, recorder)
    receive.close()
    assert any(isinstance(f, workers.ConnectionLost) and f.code == 4001 for f in exits(recorder))
    texts += [session_repr, repr(worker.config), *captured.lines]
    assert "trio-websocket" in captured.names
    assert_clean(texts, [WS_TOKEN, BEARER])


# --------------------------------------------------------------- the Pyrogram worker


@pytest.fixture
def mtproto(mtproto_server: MTProtoServer, in_tmp_cwd: Path) -> MTProtoServer:
    """A loopback MTProto server; Pyrogram's unknown_errors.txt goes to a temporary cwd."""
    return mtproto_server


async def test_the_pyrogram_worker_leaks_nothing_through_its_failures(
    captured: Capture, mtproto: MTProtoServer, tmp_path: Path, connect_proxy: ConnectProxy
) -> None:
    """A bot login, FloodWait and AUTH_KEY_UNREGISTERED at DEBUG: no hash, token or key shown."""
    recorder = Recorder()
    registry = workers.Registry()
    user = mtproto.new_account()
    bot = mtproto.new_account(user_id=654321, is_bot=True)
    bot.bot_token = PYROGRAM_BOT_TOKEN
    timeouts: dict[str, Any] = {"ping_interval": 0.2, "connect_timeout": 5.0, "stop_timeout": 1.0}
    proxy = connect_proxy
    user_worker = workers.PyrogramClientWorker(
        workers.PyrogramConfig(
            name="user",
            api_id=12345,
            api_hash=API_HASH,
            session_string=user.session_string,
            proxy={
                "scheme": "socks5",
                "hostname": "127.0.0.1",
                "port": proxy.port,
                "username": "user",
                "password": PROXY_PASSWORD,
            },
            **timeouts,
        ),
        registry=registry,
    )
    bot_worker = workers.PyrogramClientWorker(
        workers.PyrogramConfig(
            name="bot",
            api_id=12345,
            api_hash=API_HASH,
            bot_token=PYROGRAM_BOT_TOKEN,
            workdir=str(tmp_path),
            **timeouts,
        ),
        registry=registry,
    )
    async with observed(
        user_worker.child_spec("user", restart=specs.TRANSIENT, shutdown=2.0),
        bot_worker.child_spec("bot", restart=specs.TRANSIENT, shutdown=2.0),
        recorder=recorder,
    ) as sup:
        mtproto.fail_next(user, "help.GetNearestDc", RpcFailure.flood_wait(1))
        raw: Any = __import__("pyrogram").raw
        reply = await registry.call("user", ("invoke", raw.functions.help.GetNearestDc()))
        texts = [repr(reply), str(reply.error)]
        await until(lambda: len(exits(recorder)) >= 1)
        await until(lambda: registry.whereis("user") is not None)
        mtproto.revoke(user)
        reply = await registry.call("user", ("get_me",))
        texts += [repr(reply), str(reply.error)]
        await until(lambda: isinstance(exits(recorder)[-1], workers.AuthRevoked))
        texts += seen(sup, recorder)
    assert isinstance(exits(recorder)[0], workers.FloodWait)
    assert mtproto.call_count("auth.ImportBotAuthorization") == 1
    assert "pyrogram.session.session" in captured.names
    texts += [repr(user_worker.config), repr(bot_worker.config), *captured.lines]
    assert user.session_string is not None
    assert_clean(
        texts,
        [API_HASH, PYROGRAM_BOT_TOKEN, user.session_string, user.auth_key, PROXY_PASSWORD],
    )


async def test_the_session_file_is_readable_by_its_owner_only(
    mtproto: MTProtoServer, tmp_path: Path
) -> None:
    """A bot's session file (its auth key) is created 0600, and an existing one is tightened."""
    bot = mtproto.new_account(is_bot=True)
    made = workers.PyrogramConfig(
        name="botty", api_id=12345, api_hash=API_HASH, bot_token=bot.bot_token, workdir=tmp_path
    )
    session = tmp_path / "botty.session"
    for _ in range(2):
        worker = workers.PyrogramClientWorker(made, registry=workers.Registry())
        spec = SupervisorSpec(children=[worker.child_spec("botty", restart=specs.TEMPORARY)])
        async with supervisor.open_supervisor(spec, hooks=[]):
            assert stat.S_IMODE(os.stat(session).st_mode) == 0o600
        os.chmod(session, 0o644)  # as an older version left it


# --------------------------------------------------------------- the command line


def test_a_cli_run_at_debug_prints_no_token(tmp_path: Path) -> None:
    """``python -m supervisor run`` of a polling tree at DEBUG: httpx's lines, redacted."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "supervisor", "run", "tests.secret_targets:polling_tree"),
            *("--log-level", "DEBUG"),
        ],
        cwd=REPO,
        env={**os.environ, "SECRET_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "HTTP Request: GET" in result.stderr, result.stderr[-2000:]
    assert "bot<redacted>/getUpdates" in result.stderr
    assert_clean([result.stdout, result.stderr], [TOKEN])


def test_a_cli_run_of_a_mistyped_url_prints_no_token() -> None:
    """A config error while loading the tree reaches stderr without the token."""
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "tests.secret_targets:mistyped_tree"],
        cwd=REPO,
        env={**os.environ, "SECRET_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PollingConfigError" in result.stderr
    assert_clean([result.stdout, result.stderr], [TOKEN])


def test_httpx_status_errors_from_api_client_are_redacted_when_kept() -> None:
    """The message of httpx's own status error names the URL; kept, it shows no token."""
    request = httpx.Request("GET", f"http://h/bot{TOKEN}/getMe")
    error = httpx.HTTPStatusError(
        "404 for url", request=request, response=httpx.Response(404, request=request)
    )
    try:
        httpx.Response(404, request=request).raise_for_status()
    except httpx.HTTPStatusError as raised:
        error = raised
    workers.redact_exception(error)
    assert_clean([str(error), repr(error)], [TOKEN])
