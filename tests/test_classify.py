"""Tests for the failure kinds and the classifier from library exceptions."""

from __future__ import annotations

import errno
import socket
from typing import Any

import httpx
import pyrogram.errors
import pytest
import socks  # type: ignore[import-untyped]
import trio
import trio_websocket

import specs
import supervisor
import workers
from specs.policy import ExitKind


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "http://127.0.0.1/getUpdates")
    return httpx.Response(status, headers=headers, request=request)


def _status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = _response(status, headers)
    return httpx.HTTPStatusError("status", request=response.request, response=response)


REQUEST = httpx.Request("GET", "http://127.0.0.1/")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.PoolTimeout("pool", request=REQUEST), workers.PoolExhausted),
        (httpx.ProxyError("502 on CONNECT", request=REQUEST), workers.ProxyFailed),
        (httpx.ConnectError("refused", request=REQUEST), workers.ConnectionLost),
        (httpx.ReadError("reset", request=REQUEST), workers.ConnectionLost),
        (httpx.RemoteProtocolError("closed", request=REQUEST), workers.ConnectionLost),
        (httpx.ReadTimeout("slow", request=REQUEST), workers.HeartbeatTimeout),
        (_status_error(429, {"Retry-After": "12"}), workers.RateLimited),
        (_status_error(401), workers.AuthRevoked),
        (_status_error(404), workers.AuthRevoked),
        (_status_error(409), workers.Conflict),
        (_status_error(502), workers.ServerError),
    ],
)
def test_httpx_exceptions(error: Exception, expected: type[workers.Failure]) -> None:
    """httpx's pool, proxy, transport, timeout and status errors map to their failures."""
    assert type(workers.DEFAULT.classify(error)) is expected


def test_retry_after_becomes_the_restart_delay() -> None:
    """A 429's Retry-After header is the failure's restart delay."""
    failure = workers.DEFAULT.classify(_status_error(429, {"Retry-After": "12"}))
    assert failure.supervisor_restart_delay == 12.0


@pytest.mark.parametrize(
    ("error", "expected", "code"),
    [
        (
            trio_websocket.ConnectionClosed(trio_websocket.CloseReason(1001, "going away")),
            workers.ConnectionLost,
            1001,
        ),
        (trio_websocket.ConnectionClosed(None), workers.ConnectionLost, 1006),
    ],
)
def test_websocket_close_codes(
    error: Exception, expected: type[workers.ConnectionLost], code: int
) -> None:
    """A WebSocket close becomes ConnectionLost with its close code (1006 without a frame)."""
    failure = workers.DEFAULT.classify(error)
    assert isinstance(failure, expected)
    assert failure.code == code


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, workers.AuthRevoked), (403, workers.AuthRevoked), (503, workers.ServerError)],
)
def test_websocket_rejections(status: int, expected: type[workers.Failure]) -> None:
    """A rejected upgrade maps by status: 401/403 are AuthRevoked."""
    error = trio_websocket.ConnectionRejected(status, ((b"content-type", b"text/plain"),), b"")
    assert type(workers.DEFAULT.classify(error)) is expected


# generated code without re-exports: used untyped
_errors: Any = pyrogram.errors
_raw: Any = pyrogram.raw


def _rpc_error(code: int, message: str) -> Exception:
    """The exception Pyrogram raises for a server's ``RpcError(code, message)``."""
    with pytest.raises(_errors.RPCError) as caught:
        _errors.RPCError.raise_it(
            _raw.types.RpcError(error_code=code, error_message=message), _raw.functions.Ping
        )
    error: Exception = caught.value
    return error


@pytest.mark.usefixtures("in_tmp_cwd")
@pytest.mark.parametrize(
    ("code", "message", "raised", "expected"),
    [
        (420, "FLOOD_WAIT_30", "FloodWait", workers.FloodWait(seconds=30)),
        (420, "SLOWMODE_WAIT_5", "SlowmodeWait", workers.FloodWait(seconds=5)),
        (420, "2FA_CONFIRM_WAIT_60", "TwoFaConfirmWait", workers.FloodWait(seconds=60)),
        (420, "FLOOD_TEST_PHONE_WAIT_7", "FloodTestPhoneWait", workers.FloodWait(seconds=7)),
        (420, "TAKEOUT_INIT_DELAY_9", "TakeoutInitDelay", workers.FloodWait(seconds=9)),
        (420, "FLOOD_PREMIUM_WAIT_5", "Flood", workers.FloodWait(seconds=5)),
        (420, "SOMETHING_FLOOD", "Flood", workers.RateLimited()),
        (401, "AUTH_KEY_UNREGISTERED", "AuthKeyUnregistered", None),
        (401, "AUTH_KEY_INVALID", "AuthKeyInvalid", None),
        (401, "AUTH_KEY_PERM_EMPTY", "AuthKeyPermEmpty", None),
        (401, "SESSION_REVOKED", "SessionRevoked", None),
        (401, "SESSION_EXPIRED", "SessionExpired", None),
        (401, "USER_DEACTIVATED", "UserDeactivated", None),
        (401, "USER_DEACTIVATED_BAN", "UserDeactivatedBan", None),
        (401, "ACTIVE_USER_REQUIRED", "ActiveUserRequired", None),
        (401, "SESSION_PASSWORD_NEEDED", "SessionPasswordNeeded", None),
        (406, "AUTH_KEY_DUPLICATED", "AuthKeyDuplicated", None),
        (500, "RPC_CALL_FAIL", "RpcCallFail", workers.ServerError(500, "RPC_CALL_FAIL")),
        (500, "SOMETHING_NEW", "InternalServerError", workers.ServerError(500, "SOMETHING_NEW")),
        (-503, "Timeout", "Timeout", workers.ServerError(503, "Timeout")),
        (502, "BAD_GATEWAY", "UnknownError", workers.ServerError(502, "BAD_GATEWAY")),
        (504, "GATEWAY_TIMEOUT", "UnknownError", workers.ServerError(504, "GATEWAY_TIMEOUT")),
        (429, "TOO_MANY_REQUESTS", "UnknownError", workers.RateLimited()),
        (429, "RETRY_AFTER_12", "UnknownError", workers.RateLimited(retry_after=12)),
    ],
)
def test_pyrogram_rpc_errors(
    code: int, message: str, raised: str, expected: workers.Failure | None
) -> None:
    """Each RPC error Pyrogram raises for a server's answer maps to its failure row."""
    error = _rpc_error(code, message)
    assert type(error).__name__ == raised
    failure = workers.DEFAULT.classify(error)
    if expected is None:  # the 401 family and 406 AUTH_KEY_DUPLICATED
        expected = workers.AuthRevoked(cause=message)
    assert repr(failure) == repr(expected)  # failures are exceptions: equal by identity


@pytest.mark.usefixtures("in_tmp_cwd")
@pytest.mark.parametrize(
    ("code", "message"),
    [(400, "PEER_ID_INVALID"), (403, "CHAT_WRITE_FORBIDDEN"), (303, "USER_MIGRATE_4")],
)
def test_pyrogram_request_errors_are_crashes(code: int, message: str) -> None:
    """A request's own RPC error (400, 403, a migration) is no connection failure: Crashed."""
    error = _rpc_error(code, message)
    failure = workers.DEFAULT.classify(error)
    assert isinstance(failure, workers.Crashed)
    assert failure.exception is error


def test_flood_wait_carries_its_seconds() -> None:
    """Pyrogram's FloodWait value becomes the restart delay."""
    failure = workers.DEFAULT.classify(pyrogram.errors.FloodWait(value=30))
    assert failure.supervisor_restart_delay == 30.0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionError(), workers.ConnectionLost),  # Pyrogram's after 3 failed attempts
        (ConnectionError("Received empty data."), workers.ConnectionLost),
        (ConnectionResetError("Connection lost"), workers.ConnectionLost),  # asyncio's
        (OSError(BrokenPipeError(errno.EPIPE, "Broken pipe")), workers.ConnectionLost),
        (TimeoutError("Request timed out"), workers.HeartbeatTimeout),
        (socks.GeneralProxyError("Socket error"), workers.ProxyFailed),
        (OSError(socks.GeneralProxyError("Socket error")), workers.ProxyFailed),
    ],
)
def test_pyrogram_connection_errors(error: Exception, expected: type[workers.Failure]) -> None:
    """Pyrogram's errno-less connection errors and PySocks' errors are typed by DEFAULT."""
    assert type(workers.DEFAULT.classify(error)) is expected


def test_a_refusing_socks_proxy_is_a_proxy_failure() -> None:
    """PySocks' error for a SOCKS5 proxy that refuses the connection is ProxyFailed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    # nothing listens there now: the connection is refused at once
    client = socks.socksocket()
    client.set_proxy(socks.SOCKS5, "127.0.0.1", port)
    with client, pytest.raises(socks.ProxyError) as caught:
        client.connect(("127.0.0.1", 443))
    failure = workers.DEFAULT.classify(caught.value)
    assert isinstance(failure, workers.ProxyFailed)
    assert f"127.0.0.1:{port}" in failure.cause


@pytest.mark.parametrize(
    "message",
    [
        "Client has not been started yet",
        "Client is already connected",
        "Client is already terminated",
        "Can't disconnect an initialized client",
        "Can't initialize a disconnected client",
    ],
)
def test_pyrogram_misuse_is_not_a_connection_loss(message: str) -> None:
    """Pyrogram's ConnectionError for misuse ("Client is already connected") is Crashed."""
    error = ConnectionError(message)
    failure = workers.DEFAULT.classify(error)
    assert isinstance(failure, workers.Crashed)
    assert failure.exception is error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), workers.ConnectionLost),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), workers.ConnectionLost),
        (OSError(errno.EHOSTUNREACH, "no route"), workers.ConnectionLost),
        (socket.gaierror(-2, "Name or service not known"), workers.ConnectionLost),
        (TimeoutError(), workers.HeartbeatTimeout),
        (trio.TooSlowError(), workers.HeartbeatTimeout),
        (trio.BrokenResourceError(), workers.ConnectionLost),
        (OSError(errno.ENOSPC, "disk full"), workers.Crashed),
        (KeyError("bug"), workers.Crashed),
    ],
)
def test_network_errors(error: Exception, expected: type[workers.Failure]) -> None:
    """OS and trio network errors are losses or timeouts; anything else is a crash."""
    assert type(workers.DEFAULT.classify(error)) is expected


def test_failures_pass_through_and_groups_are_unwrapped() -> None:
    """A failure is returned as is, also from inside a one-exception group."""
    failure = workers.ServerError(status=503)
    assert workers.DEFAULT.classify(failure) is failure
    assert workers.DEFAULT.classify(ExceptionGroup("g", [failure])) is failure


def test_user_rules_go_first() -> None:
    """A classifier extended with a user rule tries it before the defaults."""

    def mine(error: BaseException) -> workers.Failure | None:
        return workers.Conflict(detail="mine") if isinstance(error, KeyError) else None

    classifier = workers.DEFAULT.extend(mine)
    assert isinstance(classifier(KeyError("x")), workers.Conflict)
    assert isinstance(classifier(TimeoutError()), workers.HeartbeatTimeout)


@pytest.mark.parametrize("kind", workers.FAILURE_KINDS)
def test_every_failure_kind_states_its_handling(kind: type[workers.Failure]) -> None:
    """Every failure kind documents itself and its default recovery."""
    assert kind.__doc__
    assert kind.recovery


@pytest.mark.parametrize(
    ("failure", "kind", "delay"),
    [
        (workers.AuthRevoked(cause="x"), ExitKind.SHUTDOWN, None),
        (workers.Conflict(), ExitKind.SHUTDOWN, None),
        (workers.FloodWait(seconds=9), ExitKind.ABNORMAL, 9.0),
        (workers.ConnectionLost(code=1011), ExitKind.ABNORMAL, None),
    ],
)
def test_supervisor_reads_normal_exit_and_delay(
    failure: workers.Failure, kind: ExitKind, delay: float | None
) -> None:
    """ExitReason.of sees a failure's normal-exit flag and its delay."""
    reason = supervisor.ExitReason.of(failure)
    assert (reason.kind, reason.restart_delay) == (kind, delay)


async def test_refused_trio_connect_is_a_connection_loss() -> None:
    """trio's errno-less "all attempts to connect failed" OSError is a ConnectionLost."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(OSError, match="all attempts to connect") as caught:
        await trio.open_tcp_stream("127.0.0.1", port)
    assert isinstance(workers.DEFAULT.classify(caught.value), workers.ConnectionLost)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 500, 502, 503])
def test_one_status_table_for_the_classifier_and_the_websocket_worker(status: int) -> None:
    """An HTTP status means the same failure to the classifier and a rejected WebSocket upgrade."""
    from workers._websocket import handshake_failure

    expected = workers.STATUS_FAILURES.get(status, workers.ServerError)
    rejected = trio_websocket.ConnectionRejected(status, (), b"")
    assert type(workers.DEFAULT.classify(_status_error(status))) is expected
    assert type(handshake_failure(rejected)) is expected


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (workers.FloodWait(seconds=3), "flood_wait"),
        (workers.RateLimited(), "rate_limited"),
        (workers.ProxyFailed(), "proxy"),
        (workers.ConnectionLost(), "connection"),
        (workers.HeartbeatTimeout(), "connection"),
        (workers.PoolExhausted(), "connection"),
        (workers.ServerError(), "temporary"),
        (workers.AuthRevoked(), "auth"),
        (workers.Conflict(), "conflict"),
        (workers.Crashed(exception=ValueError()), "unknown"),
    ],
)
def test_each_failure_declares_its_kind(failure: workers.Failure, kind: str) -> None:
    """A typed failure's exit reason carries its declared failure kind."""
    assert supervisor.ExitReason.of(failure).failure_kind == kind


def test_default_classifier_is_a_spec_classifier() -> None:
    """workers.DEFAULT is accepted as a spec's classifier and maps like classify()."""
    spec = specs.SupervisorSpec(children=[], classifier=workers.DEFAULT)
    error = pyrogram.errors.FloodWait(value=6)
    assert spec.classifier is not None
    mapped = spec.classifier(error)
    assert isinstance(mapped, workers.FloodWait)
    assert mapped.seconds == 6


async def test_plain_child_raising_pyrogram_floodwait_waits_its_seconds(
    autojump_clock: object,
) -> None:
    """A plain child's pyrogram FloodWait(6) under classifier=workers.DEFAULT restarts after 6 s."""
    starts: list[float] = []

    async def child() -> None:
        starts.append(trio.current_time())
        if len(starts) == 1:
            raise pyrogram.errors.FloodWait(value=6)
        await trio.sleep_forever()

    spec = specs.SupervisorSpec(
        children=[specs.ChildSpec(id="c", start=child)], classifier=workers.DEFAULT
    )
    async with supervisor.open_supervisor(spec, hooks=[]):
        await trio.sleep(10)
    assert len(starts) == 2
    assert starts[1] - starts[0] == 6


def test_workers_specs_install_the_default_classifier() -> None:
    """Worker.child_spec, reconnecting_child_spec and account_pool classify with DEFAULT."""
    worker = workers.Worker()
    assert worker.child_spec("w").classifier is workers.DEFAULT
    inner = worker.reconnecting_child_spec("w").start
    assert isinstance(inner, specs.SupervisorSpec)
    assert inner.classifier is workers.DEFAULT
    assert workers.account_pool().classifier is workers.DEFAULT


def test_reconnecting_child_spec_takes_a_failure_policy() -> None:
    """reconnecting_child_spec passes a failure policy to the worker's own supervisor."""
    inner = (
        workers.Worker()
        .reconnecting_child_spec("w", failure_policy=specs.FIELD_REPORT_POLICY)
        .start
    )
    assert isinstance(inner, specs.SupervisorSpec)
    assert inner.failure_policy is specs.FIELD_REPORT_POLICY
