"""Health and metrics over HTTP: /healthz, /readyz, /metrics (Prometheus), /tree (JSON).

An ASGI application served by hypercorn on the same trio loop as the tree,
so a stuck loop cannot answer: liveness is that it answers at all (plus the
scheduling lag it measured), readiness that every child that should run runs.

Serving must not delay supervision, whatever the requests: /tree and
/metrics are built at most once per ``max_age`` seconds and one at a time
(requests meanwhile get the last body), serialised in small steps with
checkpoints between them, and sent in chunks. /tree and /metrics can be
guarded by a bearer token; /healthz and /readyz never are (probes have none).
"""

from __future__ import annotations

import hmac
import json
import math
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import attrs
import trio

from specs.policy import ExitAction

from ._events import ChildExited, ChildRestarted, Event, GaveUp, ShutdownTimedOut
from ._snapshot import ChildInfo, ChildState, SupervisorSnapshot, snapshot_in_steps
from ._stats import ExitStats
from ._status import Running

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ._api import _Handle
    from ._cluster import PoolRegistry

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


#: JSON pieces (about half as many children) serialised between two checkpoints.
CHUNK: Final = 20
#: Bytes per ASGI body message.
BODY_CHUNK: Final = 64 * 1024


def _tree(handle: _Handle) -> Iterator[_Handle]:
    """Each supervisor of the tree, depth first, read from its records (no view is built)."""
    yield handle
    for child in handle._core.children.values():
        inc = child.inc
        if inc is not None and getattr(type(inc.value), "is_supervisor_handle", False):
            yield from _tree(inc.value)


def _supervisors(handle: _Handle) -> Iterator[tuple[_Handle, list[ChildInfo]]]:
    """Each supervisor of the tree with its children, depth first."""
    for supervisor in _tree(handle):
        yield supervisor, supervisor.which_children()


def not_running(handle: _Handle) -> dict[str, str]:
    """Every child that should be running and is not: ``{"root/db": "restarting"}``.

    A child should be running if its supervisor keeps it: everything in
    ``which_children()`` of every supervisor of the tree. That includes a
    child stopped by ``terminate_child``, a transient child that exited
    normally (or with a normal failure such as ``AuthRevoked``), a subtree
    restarting after it gave up, and a stopped significant child, until it is
    restarted or deleted; a temporary child is forgotten when it exits, so
    it never holds the tree back.
    """
    return {
        f"{supervisor.name}/{child.id}": child.state.value
        for supervisor, children in _supervisors(handle)
        for child in children
        if child.state is not ChildState.RUNNING
    }


def _object_head(mapping: dict[str, Any], last: str) -> str:
    """``json.dumps(mapping)`` up to the value of its last key ``last`` (left open)."""
    text = json.dumps({**mapping, last: None})
    suffix = "null}"
    assert text.endswith(suffix), text  # the last key's value is null
    return text[: -len(suffix)]


def tree_fragments(snapshot: SupervisorSnapshot) -> Iterator[str]:
    """``json.dumps(snapshot.to_dict())`` in pieces, about one per child.

    Lets a large tree be serialised in steps (``"".join`` of the pieces is
    exactly the one-shot text).
    """
    yield _object_head(attrs.evolve(snapshot, children=()).to_dict(), "children") + "["
    for index, child in enumerate(snapshot.children):
        if index:
            yield ", "
        if child.supervisor is None:
            yield json.dumps(child.to_dict())
        else:
            yield _object_head(attrs.evolve(child, supervisor=None).to_dict(), "supervisor")
            yield from tree_fragments(child.supervisor)
            yield "}"
    yield "]}"


class Cached(Generic[T]):
    """A value built by ``build`` at most every ``max_age`` seconds, one build at a time.

    While a build runs, other requests get the previous value (stale while
    building); only the very first requests wait for one. A build that took
    long (a large tree's, although taken in steps) is repeated
    less often: a value is kept for at least ``1 / budget`` times as long as
    its build took, so building takes at most that share of the loop.
    """

    def __init__(
        self, build: Callable[[], Awaitable[T]], max_age: float, *, budget: float = 0.01
    ) -> None:
        self.build = build
        self.max_age = max_age
        self.budget = budget
        self.keep_for = max_age
        self.value: T | None = None
        self.built_at = -math.inf
        self.builds = 0
        self._lock = trio.Lock()

    def _fresh(self) -> bool:
        return self.value is not None and trio.current_time() - self.built_at < self.keep_for

    async def get(self) -> T:
        """The value, rebuilt first if it is older than it may be."""
        if self._fresh() or (self._lock.locked() and self.value is not None):
            assert self.value is not None  # _fresh() says so
            return self.value
        async with self._lock:
            if not self._fresh():
                started = trio.current_time()
                value = await self.build()
                self.built_at = trio.current_time()
                self.value = value
                self.keep_for = max(self.max_age, (self.built_at - started) / self.budget)
                self.builds += 1
        assert self.value is not None  # built under the lock
        return self.value


class RecoveryCounts:
    """Recoveries that worked and that did not, per supervisor and failure kind.

    Read at scrape time from the children's own records (``ChildSnapshot.recovery``
    reads the same), so the rule of what counts as a recovery stays in one
    place (:mod:`supervisor._stats`); a restarted child that has run healthy
    long enough counts as soon as it has. Only children that ever exited
    have records: an idle child costs one check. Each record's counts are
    remembered weakly, so the totals only grow: a deleted child, a
    restarted subtree or a stopped child takes nothing back.

    Attributes:
        totals: ``(supervisor, failure kind, "recovered" or
            "not_recovered")`` to its count.
    """

    def __init__(self) -> None:
        self.totals: Counter[tuple[str, str, str]] = Counter()
        self._seen: weakref.WeakKeyDictionary[ExitStats, dict[str, tuple[int, int]]] = (
            weakref.WeakKeyDictionary()
        )

    def update(self, handle: _Handle) -> None:
        """Add what the tree's children recovered (or did not) since the last update."""
        now = trio.current_time()
        for supervisor in _tree(handle):
            for child in supervisor._core.children.values():
                stats = child.stats
                if stats is None:
                    continue
                status = child.status
                uptime = now - status.inc.started_at if isinstance(status, Running) else None
                seen = self._seen.setdefault(stats, {})
                for kind, (worked, failed) in stats.recovered_by_kind(uptime).items():
                    had_worked, had_failed = seen.get(kind, (0, 0))
                    self.totals[(supervisor.name, kind, "recovered")] += max(0, worked - had_worked)
                    self.totals[(supervisor.name, kind, "not_recovered")] += max(
                        0, failed - had_failed
                    )
                    seen[kind] = (max(worked, had_worked), max(failed, had_failed))


class Metrics:
    """Prometheus metrics fed by events; children by state are counted at scrape time.

    Metrics: ``supervisor_child_exits_total{supervisor,child,kind}``,
    ``supervisor_restarts_total{supervisor,child,kind}`` (kind: the failure's
    class name, normal/shutdown, or ``sibling`` for a child restarted by a
    group strategy), ``supervisor_failures_total{supervisor,failure_kind,action}``
    (each failure by its kind and what was done: restart, keep, remove,
    stay_down, escalate), ``supervisor_shutdown_timeouts_total``,
    ``supervisor_give_ups_total{supervisor}``,
    ``supervisor_recoveries_total{supervisor,failure_kind,outcome}`` (each
    restart after a failure, once judged: outcome ``recovered`` if the child
    then ran healthy for ``specs.policy.healthy_after``, ``not_recovered`` if
    it failed again, or failed to start, before that; read at scrape time,
    see :class:`RecoveryCounts`) and
    ``supervisor_children{supervisor,state}``; for each keyed pool open in
    the program, the cluster as its member sees it (:func:`cluster_metrics`).

    A hook of the root sees the whole tree's events: subtrees', and those
    of supervisors opened inside a child (``account_pool``'s accounts), which
    join their tree (see ``attach`` in ``run_supervisor``); ``supervisor``
    is the label of each supervisor's name.

    Args:
        handle: The tree whose children are counted (may be set later, as
            ``metrics.handle``, so the events of the start are counted too).
        pools: The program's keyed pools, if it has any.
    """

    def __init__(self, handle: _Handle | None = None, pools: PoolRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.handle = handle
        self.pools = pools
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
        self.failures = Counter(
            "supervisor_failures",
            "Children's failures, by failure kind and the action taken.",
            ("supervisor", "failure_kind", "action"),
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
        metrics = self

        class _ByState:
            def collect(self) -> Iterator[GaugeMetricFamily]:
                family = GaugeMetricFamily(
                    "supervisor_children", "Children by state.", labels=("supervisor", "state")
                )
                if metrics.handle is not None:
                    for supervisor in _tree(metrics.handle):
                        counts = dict.fromkeys(ChildState, 0)
                        for child in supervisor._core.children.values():
                            counts[child.status.state] += 1
                        for state, count in sorted(counts.items(), key=lambda i: i[0].value):
                            family.add_metric([supervisor.name, state.value], count)
                yield family

        class _Recoveries:
            def collect(self) -> Iterator[CounterMetricFamily]:
                family = CounterMetricFamily(
                    "supervisor_recoveries",
                    "Restarts after a failure, by whether the child then ran healthy.",
                    labels=("supervisor", "failure_kind", "outcome"),
                )
                if metrics.handle is not None:
                    metrics.recoveries.update(metrics.handle)
                for labels, count in sorted(metrics.recoveries.totals.items()):
                    family.add_metric(list(labels), count)
                yield family

        class _Cluster:
            def collect(self) -> Iterator[Metric]:
                summaries = [] if metrics.pools is None else metrics.pools.summaries()
                yield from cluster_metrics(summaries)

        self.recoveries = RecoveryCounts()
        self.registry.register(_ByState())
        self.registry.register(_Recoveries())
        self.registry.register(_Cluster())
        self._cause: dict[tuple[str, str], str] = {}

    def __call__(self, event: Event) -> None:
        """The event hook."""
        match event:
            case ChildExited(supervisor=sup, path=path, child=child, reason=reason, action=action):
                kind = type(reason.exception).__name__ if reason.exception else str(reason)
                self.exits.labels(sup, child, kind).inc()
                if reason.failure_kind is not None:
                    self.failures.labels(sup, reason.failure_kind, action.value).inc()
                if action is ExitAction.RESTART:
                    self._cause[(path, child)] = kind
            case ChildRestarted(supervisor=sup, path=path, child=child):
                # a restart is counted when it happens (intensity may refuse
                # it); a sibling restarted by a group strategy has no exit
                kind = self._cause.pop((path, child), "sibling")
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


def cluster_metrics(summaries: list[dict[str, Any]]) -> Iterator[Metric]:
    """Prometheus families for keyed pools' :meth:`~supervisor.cluster.KeyedPool.summary`.

    ``supervisor_cluster_member_info{pool,member,mode}`` (1: who this member
    is), ``supervisor_cluster_members{pool}`` (live members seen),
    ``supervisor_cluster_keys{pool,member}`` (keys each member owns in etcd),
    ``supervisor_cluster_local_keys{pool,state}`` (this member's keys by state),
    ``supervisor_cluster_pending_keys{pool}``, ``supervisor_cluster_handoffs{pool}``
    (handoffs in progress), ``supervisor_cluster_safe{pool}`` (1 while it may
    run children), ``supervisor_cluster_safe_for_seconds{pool}`` (+Inf
    embedded) and ``supervisor_cluster_takeovers_total{pool}``.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"supervisor_cluster_{name}", text, labels=("pool", *labels))

    info = gauge("member_info", "This member of each pool's cluster.", ("member", "mode"))
    members = gauge("members", "Live members seen.")
    keys = gauge("keys", "Keys each member owns, as etcd holds them.", ("member",))
    local = gauge("local_keys", "This member's keys by state.", ("state",))
    pending = gauge("pending_keys", "Keys placed here, not yet acquired.")
    handoffs = gauge("handoffs", "Keys this member is handing over now.")
    safe = gauge("safe", "1 while this member provably holds its lease.")
    safe_for = gauge("safe_for_seconds", "How long it may run its children without a renewal.")
    takeovers = CounterMetricFamily(
        "supervisor_cluster_takeovers", "Keys this member acquired.", labels=("pool",)
    )
    for summary in summaries:
        pool = str(summary["name"])
        info.add_metric([pool, summary["member"], summary["mode"]], 1)
        members.add_metric([pool], len(summary["members"]))
        for member, count in summary["keys_per_member"].items():
            keys.add_metric([pool, member], count)
        for state, count in summary["states"].items():
            local.add_metric([pool, state], count)
        pending.add_metric([pool], len(summary["pending"]))
        handoffs.add_metric([pool], len(summary["handoffs"]))
        safe.add_metric([pool], 1 if summary["safe"] else 0)
        left = summary["safe_for"]
        safe_for.add_metric([pool], math.inf if left is None else left)
        takeovers.add_metric([pool], summary["takeovers"])
    yield from (info, members, keys, local, pending, handoffs, safe, safe_for, takeovers)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


_JSON = "application/json"
_HEAVY = frozenset({"/tree", "/metrics"})
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class HealthApp:
    """The ASGI application; see the module docstring.

    Args:
        handle: The tree (``None`` until it has started: not ready yet).
        metrics: Its metrics.
        pools: The program's keyed pools: /tree adds ``"cluster"``, their
            :meth:`~supervisor.cluster.KeyedPool.summary` list, when any is open.
        token: If given, /tree and /metrics need ``Authorization: Bearer <token>``.
        max_age: Seconds a built /tree or /metrics body is served before it
            is rebuilt (longer for a large tree: see :class:`Cached`).
        interval: Seconds between two /tree or /metrics responses: they are
            sent one at a time, at most ``1 / interval`` a second; more
            requests wait their turn.
        tick: The heartbeat's period (the loop lag it measures).
    """

    def __init__(
        self,
        handle: _Handle | None,
        metrics: Metrics,
        *,
        pools: PoolRegistry | None = None,
        token: str | None = None,
        max_age: float = 1.0,
        interval: float = 0.5,
        tick: float = 0.5,
    ) -> None:
        self.handle = handle
        self.metrics = metrics
        self.pools = pools
        self._token = None if token is None else f"Bearer {token}".encode()
        self.tick = tick
        self.lag = 0.0
        self.tree = Cached(self._build_tree, max_age)
        self.exposition = Cached(self._build_metrics, max_age)
        self.interval = interval
        self._turn = trio.Lock()
        self._next_turn = -math.inf

    def __repr__(self) -> str:
        # never the token
        guarded = "guarded" if self._token is not None else "open"
        return f"<HealthApp {guarded} max_age={self.tree.max_age}>"

    async def heartbeat(self) -> None:
        """Measure how late the loop wakes a sleeper (scheduling lag)."""
        while True:
            due = trio.current_time() + self.tick
            await trio.sleep_until(due)
            self.lag = max(0.0, trio.current_time() - due)

    async def _build_tree(self) -> bytes:
        assert self.handle is not None  # respond() checks
        pieces = []
        picture = await snapshot_in_steps(self.handle._core, step=CHUNK)
        for count, piece in enumerate(tree_fragments(picture)):
            pieces.append(piece)
            if count % CHUNK == 0:
                await trio.lowlevel.checkpoint()
        summaries = [] if self.pools is None else self.pools.summaries()
        if summaries:
            # the root object, with the cluster's view as its last key
            pieces[-1] = pieces[-1].removesuffix("}")
            pieces.append(', "cluster": ' + json.dumps(summaries) + "}")
        return "".join(pieces).encode()

    async def _build_metrics(self) -> bytes:
        return self.metrics.exposition()

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        given = next((v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"), b"")
        return hmac.compare_digest(given, self._token)

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
        if scope["path"] not in _HEAVY:
            await self._answer(scope, send)
            return
        # one at a time, paced: a flood waits its turn instead of taking the loop
        async with self._turn:
            await trio.sleep_until(self._next_turn)
            try:
                await self._answer(scope, send)
            finally:
                self._next_turn = trio.current_time() + self.interval

    async def _answer(self, scope: Scope, send: Send) -> None:
        status, content_type, body = await self.respond(scope)
        headers = [(b"content-type", content_type.encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # in chunks: a large body is sent in several steps, not one long write
        for offset in range(0, max(len(body), 1), BODY_CHUNK):
            more = offset + BODY_CHUNK < len(body)
            chunk = body[offset : offset + BODY_CHUNK]
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def respond(self, scope: Scope) -> tuple[int, str, bytes]:
        """Status, content type and body for a request."""
        path = scope["path"]
        handle = self.handle
        if path == "/healthz":
            # alive while it starts too: a slow start is no reason to be killed
            alive = handle is None or handle.running
            status = "starting" if handle is None else ("ok" if alive else "shutting down")
            body = {"status": status, "loop_lag": self.lag}
            return (200 if alive else 503), _JSON, _json(body)
        if path == "/readyz":
            if handle is None or not handle.running:
                waiting = {"(tree)": "starting" if handle is None else "shutting down"}
            else:
                waiting = not_running(handle)
            if self.pools is not None:
                waiting.update(self.pools.not_ready())  # a member with no proof of ownership
            body_ready = {"ready": not waiting, "not_running": waiting}
            return (503 if waiting else 200), _JSON, _json(body_ready)
        if path not in _HEAVY:
            return 404, "text/plain", b"not found\n"
        if not self._authorized(scope):
            return 401, "text/plain", b"a bearer token is required\n"
        if path == "/metrics":
            return 200, _PROMETHEUS, await self.exposition.get()
        if handle is None:
            return 503, "text/plain", b"starting\n"
        return 200, _JSON, await self.tree.get()


async def serve_health(
    app: HealthApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn; ``task_status.started(port)`` once listening.

    Raises:
        OSError: the address cannot be bound (the port is busy, say).
    """
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
