"""Tests for the failure kinds and the classifier from library exceptions."""

from __future__ import annotations

import errno
import socket

import httpx
import pyrogram.errors
import pytest
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


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (pyrogram.errors.FloodWait(value=30), workers.FloodWait),
        (pyrogram.errors.SlowmodeWait(value=5), workers.FloodWait),
        (pyrogram.errors.AuthKeyUnregistered(), workers.AuthRevoked),
        (pyrogram.errors.SessionRevoked(), workers.AuthRevoked),
        (pyrogram.errors.AuthKeyDuplicated(), workers.AuthRevoked),
        (pyrogram.errors.InternalServerError(), workers.ServerError),
        (pyrogram.errors.BadRequest(), workers.Crashed),
    ],
)
def test_pyrogram_errors(error: Exception, expected: type[workers.Failure]) -> None:
    """Pyrogram's RPC errors map: 420 waits, the 401 family and 406 duplicated key, 5xx."""
    assert type(workers.DEFAULT.classify(error)) is expected


def test_flood_wait_carries_its_seconds() -> None:
    """Pyrogram's FloodWait value becomes the restart delay."""
    failure = workers.DEFAULT.classify(pyrogram.errors.FloodWait(value=30))
    assert failure.supervisor_restart_delay == 30.0


def test_pyrogram_misuse_is_not_a_connection_loss() -> None:
    """Pyrogram's "Client has not been started yet" ConnectionError is a crash, not a loss."""
    failure = workers.DEFAULT.classify(ConnectionError("Client has not been started yet"))
    assert isinstance(failure, workers.Crashed)


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
