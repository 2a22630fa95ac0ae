"""A small etcd v3 client on trio: the JSON gateway (``/v3/...``) over httpx.

Only what the cluster needs: leases (grant, keepalive, revoke), a prefix range,
create-if-absent (one key, or a batch in one round trip) and delete-if-mine
transactions, and a prefix watch from a revision. Keys and values are base64 in
the gateway's JSON; this module encodes and decodes them, so callers see
``str`` keys and ``bytes`` values.
Every unary request is bounded by ``timeout`` (a trio deadline); the watch
stream is not (events may be rare): its caller bounds it by other means.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final, Literal

import attrs
import httpx
import trio

DEFAULT_TIMEOUT: Final = 2.0
MAX_BATCH: Final = 64


class EtcdUnavailable(ConnectionError):
    """No endpoint of etcd answered (refused, reset, timed out, or not JSON)."""


class EtcdRequestFailed(RuntimeError):
    """etcd answered a request with an error (the gateway's ``{"error", "code"}``)."""

    def __init__(self, path: str, code: int, message: str) -> None:
        super().__init__(f"etcd refused {path}: {message} (code {code})")
        self.path = path
        self.code = code
        self.message = message


class WatchCompacted(EtcdRequestFailed):
    """A watch asked for a revision etcd has already compacted away: read afresh."""


@attrs.frozen
class KeyValue:
    """One key as etcd holds it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@attrs.frozen
class WatchEvent:
    """One change seen by a watch: a put (``kv`` is the new value) or a delete."""

    kind: Literal["put", "delete"]
    kv: KeyValue


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _range_end_b64(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return _b64(b"\x00")
    raw[-1] += 1
    return _b64(bytes(raw))


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(item.get("key", "")).decode(),
        value=_unb64(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        lease=int(item.get("lease", 0)),
    )


def _create_op(key: str, value: bytes, lease: int) -> dict[str, Any]:
    """A transaction putting ``key`` under ``lease`` only if it is absent."""
    return {
        "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}],
    }


def _revision(answer: dict[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))


class EtcdClient:
    """A connection to etcd's JSON gateway; ``async with EtcdClient([...]) as etcd``.

    Args:
        endpoints: Base URLs (``http://127.0.0.1:2379``); a request that finds
            one unreachable tries the next.
        timeout: Seconds each unary request may take in all.
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = tuple(url.rstrip("/") for url in endpoints)
        self.timeout = timeout
        self._current = 0
        # httpx's own timeouts off: every deadline is a trio one
        self._http = httpx.AsyncClient(timeout=None, trust_env=False)

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        with trio.CancelScope(shield=True):
            await self._http.aclose()

    def _order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._current + i) % n] for i in range(n)]

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        failures: list[str] = []
        with trio.move_on_after(self.timeout):
            for index, base in enumerate(self._order()):
                try:
                    response = await self._http.post(f"{base}{path}", json=body)
                    answer = response.json()
                except (httpx.HTTPError, ValueError) as error:
                    failures.append(f"{base}: {type(error).__name__}")
                    continue
                self._current = (self._current + index) % len(self.endpoints)
                if not isinstance(answer, dict):
                    failures.append(f"{base}: answer is not a JSON object")
                    continue
                if "error" in answer and "result" not in answer:
                    raise EtcdRequestFailed(path, int(answer.get("code", 0)), str(answer["error"]))
                return answer
        failures.append(f"no answer within {self.timeout} s")
        raise EtcdUnavailable(f"etcd {path}: " + "; ".join(failures))

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease of ``ttl`` seconds: ``(lease id, granted TTL)``."""
        answer = await self._post("/v3/lease/grant", {"TTL": ttl})
        return int(answer["ID"]), int(answer.get("TTL", 0))

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease``; the TTL it now has (``0``: the lease is gone)."""
        answer = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        result = answer.get("result", answer)
        return int(result.get("TTL", 0)) if isinstance(result, dict) else 0

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now: etcd deletes every key attached to it."""
        try:
            await self._post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdRequestFailed as error:
            if "not found" not in error.message:
                raise

    async def range_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` and the revision they were read at."""
        answer = await self._post(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _range_end_b64(prefix)}
        )
        return _revision(answer), [_kv(item) for item in answer.get("kvs", [])]

    async def create(self, key: str, value: bytes, lease: int) -> int | None:
        """Put ``key`` under ``lease`` if absent: its create revision (``None``: it was present)."""
        answer = await self._post("/v3/kv/txn", _create_op(key, value, lease))
        # proto3 JSON leaves out a false "succeeded"
        return _revision(answer) if answer.get("succeeded") else None

    async def create_many(self, keys: Sequence[str], value: bytes, lease: int) -> dict[str, int]:
        """:meth:`create` for each of ``keys``, in one transaction (one round trip).

        Each key is its own nested create-if-absent: the ones present stay as
        they are and the others are created all the same. At most
        :data:`MAX_BATCH` keys (etcd's default ``--max-txn-ops`` is 128).

        Returns:
            The keys created, each with its create revision (the same for all).
        """
        if len(keys) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} keys in one transaction (got {len(keys)})")
        if not keys:
            return {}
        answer = await self._post(
            "/v3/kv/txn",
            {"success": [{"request_txn": _create_op(key, value, lease)} for key in keys]},
        )
        revision = _revision(answer)
        return {
            key: revision
            for key, response in zip(keys, answer.get("responses", []), strict=False)
            if response.get("response_txn", {}).get("succeeded")
        }

    async def delete_if(self, key: str, create_revision: int) -> bool:
        """Delete ``key`` if it is still the one created at ``create_revision``; whether it was."""
        answer = await self._post(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "target": "CREATE",
                        "create_revision": str(create_revision),
                    }
                ],
                "success": [{"request_delete_range": {"key": _b64(key)}}],
            },
        )
        return bool(answer.get("succeeded"))

    @asynccontextmanager
    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[AsyncGenerator[list[WatchEvent]]]:
        """Watch ``prefix`` from ``start_revision``: ``async with ... as batches``.

        ``async for events in batches`` gives each batch of changes as it
        happens; leaving the block closes the stream. Stop it by cancelling
        (a ``break`` leaves httpx's inner generators to the garbage collector).

        Raises:
            WatchCompacted: ``start_revision`` is compacted: range again.
            EtcdUnavailable: the stream broke (etcd went away).
        """
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _range_end_b64(prefix),
                "start_revision": str(start_revision),
            }
        }
        base = self._order()[0]
        try:
            async with (
                self._http.stream("POST", f"{base}/v3/watch", json=body) as response,
                aclosing(_batches(response, prefix)) as batches,
            ):
                yield batches
        except (httpx.HTTPError, ValueError) as error:
            self._current = (self._current + 1) % len(self.endpoints)
            raise EtcdUnavailable(f"etcd watch on {prefix!r}: {type(error).__name__}") from error


async def _batches(response: httpx.Response, prefix: str) -> AsyncGenerator[list[WatchEvent]]:
    async for line in response.aiter_lines():
        if not line.strip():
            continue
        answer = json.loads(line)
        if "error" in answer:
            code, message = int(answer.get("code", 0)), str(answer["error"])
            raise EtcdRequestFailed("/v3/watch", code, message)
        result = answer.get("result", {})
        if int(result.get("compact_revision", 0)):
            raise WatchCompacted("/v3/watch", 11, "revision compacted")
        if result.get("canceled"):
            raise EtcdUnavailable(f"etcd cancelled the watch on {prefix!r}")
        events = [
            WatchEvent("delete" if item.get("type") == "DELETE" else "put", _kv(item["kv"]))
            for item in result.get("events", [])
        ]
        if events:
            yield events
    raise EtcdUnavailable(f"etcd closed the watch on {prefix!r}")
