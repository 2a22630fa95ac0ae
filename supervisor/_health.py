"""Health and metrics over HTTP: /healthz, /readyz, /metrics (Prometheus), /tree (JSON).

An ASGI application served by hypercorn on the same trio loop as the tree,
so a stuck loop cannot answer: liveness is that it answers at all (plus the
scheduling lag it measured), readiness that the children that matter run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import trio

from specs.policy import ExitAction

from ._events import ChildExited, ChildRestarted, Event, GaveUp, ShutdownTimedOut
from ._snapshot import ChildSnapshot, ChildState, SupervisorSnapshot

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ._api import _Handle

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _walk(snapshot: SupervisorSnapshot) -> Iterator[tuple[str, ChildSnapshot]]:
    for child in snapshot.children:
        yield snapshot.name, child
        if child.supervisor is not None:
            yield from _walk(child.supervisor)


def ready(
    snapshot: SupervisorSnapshot, significant: set[tuple[str, str]]
) -> tuple[bool, list[str]]:
    """Whether the tree is ready, and the children holding it back.

    Ready means every significant child is running; a tree without
    significant children is ready when every permanent child is running.
    """
    children = list(_walk(snapshot))
    chosen = [(s, c) for s, c in children if (s, c.id) in significant]
    if not chosen:
        chosen = [(s, c) for s, c in children if c.restart == "permanent"]
    waiting = [f"{s}/{c.id}" for s, c in chosen if c.state is not ChildState.RUNNING]
    return not waiting, waiting


class Metrics:
    """Prometheus metrics fed by events; children by state are read at scrape time.

    Metrics: ``supervisor_child_exits_total{supervisor,child,kind}``,
    ``supervisor_restarts_total{supervisor,child,kind}`` (kind: the failure's
    class name, normal/shutdown, or ``sibling`` for a child restarted by a
    group strategy), ``supervisor_shutdown_timeouts_total``,
    ``supervisor_give_ups_total{supervisor}`` and
    ``supervisor_children{supervisor,state}``.
    """

    def __init__(self, handle: _Handle) -> None:
        from prometheus_client import CollectorRegistry, Counter
        from prometheus_client.core import GaugeMetricFamily

        self.registry: CollectorRegistry = CollectorRegistry()
        labels = ("supervisor", "child", "kind")
        self.exits = Counter(
            "supervisor_child_exits", "Children's own exits.", labels, registry=self.registry
        )
        self.restarts = Counter(
            "supervisor_restarts",
            "Automatic restarts, by exit kind.",
            labels,
            registry=self.registry,
        )
        self.timeouts = Counter(
            "supervisor_shutdown_timeouts",
            "Children that overran their shutdown grace.",
            ("supervisor", "child"),
            registry=self.registry,
        )
        self.give_ups = Counter(
            "supervisor_give_ups",
            "Supervisors that reached their maximum restart intensity.",
            ("supervisor",),
            registry=self.registry,
        )

        class _ByState:
            def collect(self) -> Iterator[GaugeMetricFamily]:
                family = GaugeMetricFamily(
                    "supervisor_children", "Children by state.", labels=("supervisor", "state")
                )
                counts: dict[tuple[str, str], int] = {}
                snapshot = handle.snapshot()
                for name in {snapshot.name} | {s for s, _ in _walk(snapshot)}:
                    for state in ChildState:
                        counts[(name, state.value)] = 0
                for supervisor_name, child in _walk(snapshot):
                    counts[(supervisor_name, child.state.value)] += 1
                for (supervisor_name, state_name), count in sorted(counts.items()):
                    family.add_metric([supervisor_name, state_name], count)
                yield family

        self.registry.register(_ByState())
        self._cause: dict[tuple[str, str], str] = {}

    def __call__(self, event: Event) -> None:
        """The event hook."""
        match event:
            case ChildExited(supervisor=sup, child=child, reason=reason, action=action):
                kind = type(reason.exception).__name__ if reason.exception else str(reason)
                self.exits.labels(sup, child, kind).inc()
                if action is ExitAction.RESTART:
                    self._cause[(sup, child)] = kind
            case ChildRestarted(supervisor=sup, child=child):
                # a restart is counted when it happens (intensity may refuse
                # it); a sibling restarted by a group strategy has no exit
                kind = self._cause.pop((sup, child), "sibling")
                self.restarts.labels(sup, child, kind).inc()
            case ShutdownTimedOut(supervisor=sup, child=child):
                self.timeouts.labels(sup, child).inc()
            case GaveUp(supervisor=sup):
                self.give_ups.labels(sup).inc()
            case _:
                pass

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class HealthApp:
    """The ASGI application; see the module docstring."""

    def __init__(self, handle: _Handle, metrics: Metrics, *, tick: float = 0.5) -> None:
        self.handle = handle
        self.metrics = metrics
        self.tick = tick
        self.lag = 0.0
        self.significant: set[tuple[str, str]] = set()

    async def heartbeat(self) -> None:
        """Measure how late the loop wakes a sleeper (scheduling lag)."""
        while True:
            due = trio.current_time() + self.tick
            await trio.sleep_until(due)
            self.lag = max(0.0, trio.current_time() - due)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        status, content_type, body = self.respond(scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a path."""
        if path == "/healthz":
            alive = self.handle.running
            body = {"status": "ok" if alive else "shutting down", "loop_lag": self.lag}
            return (200 if alive else 503), "application/json", json.dumps(body).encode()
        if path == "/readyz":
            ok, waiting = ready(self.handle.snapshot(), self.significant)
            ok = ok and self.handle.running
            body_ready = {"ready": ok, "waiting": waiting}
            return (200 if ok else 503), "application/json", json.dumps(body_ready).encode()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition()
        if path == "/tree":
            return 200, "application/json", json.dumps(self.handle.snapshot().to_dict()).encode()
        return 404, "text/plain", b"not found\n"


async def serve_health(
    app: HealthApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn; ``task_status.started(port)`` once listening."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.heartbeat)
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))  # type: ignore[arg-type]
        task_status.started(int(binds[0].rsplit(":", 1)[1]))
