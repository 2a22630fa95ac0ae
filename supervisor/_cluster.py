"""A keyed pool spread over member processes, at most one owner per key (etcd).

Each member process opens a pool with the same keys and the same factory
``key -> ChildSpec``. Every key runs, as a one-child tree, on exactly one live
member, chosen by rendezvous hashing over the live members; never on two at
once. With no :class:`ClusterConfig`, the pool runs every key in this process
(embedded: one member, no etcd), with the same API.

How a member keeps "at most one" (the order of events is the proof):

- membership: the member key ``<prefix>members/<id>`` lives under the member's
  lease; ownership: ``<prefix>owners/<key>`` is created, if absent, under that
  lease. Its create revision is the key's fencing token (:func:`current_claim`).
- the member's own deadline is *when its last renewal was sent* + TTL - margin:
  etcd counts the TTL from when it received that renewal, later. At that
  deadline, if no renewal succeeded since, the member has stopped every child
  (each child's shutdown grace must fit in half the margin), before etcd can
  expire the lease and let another member take the keys.
- a handoff (a join, a leave, any change of placement) stops the old owner's
  child, then deletes its owner key; only then can the new owner create it.
  (Pacing, not safety: the new owner takes only keys it can start at once, and
  the old one stops its next key when one it released is taken.)
- a member whose lease is gone (etcd says so) has stopped its children already
  and drops its keys; it registers again under a new lease.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, Literal

import attrs
import trio

from specs import BRUTAL_KILL, INFINITY, ChildSpec, SupervisorSpec

from ._api import SupervisorHandle, run_supervisor
from ._child import current_incarnation
from ._etcd import (
    MAX_BATCH,
    EtcdClient,
    EtcdRequestFailed,
    EtcdUnavailable,
    KeyValue,
    WatchEvent,
)
from ._events import (
    ContainedHook,
    Event,
    Hook,
    KeyAcquired,
    KeyLost,
    KeyReleased,
    MemberJoined,
    MemberLeft,
    contain,
    logging_hook,
)
from ._placement import rendezvous_owner
from ._stream import EventStream

logger = logging.getLogger("supervisor.cluster")

ENV_ENDPOINTS: Final = "TRIO_SUPERVISION_ETCD"
ENV_MEMBER: Final = "TRIO_SUPERVISION_MEMBER"
ENV_PREFIX: Final = "TRIO_SUPERVISION_PREFIX"
ENV_TTL: Final = "TRIO_SUPERVISION_TTL"
ENV_MAX_STARTING: Final = "TRIO_SUPERVISION_MAX_STARTING"
DEFAULT_MAX_STARTING: Final = 8
EMBEDDED_MEMBER: Final = "local"

KeyState = Literal["starting", "running", "stopping", "stopped", "failed"]


class ClusterConfigError(ValueError):
    """A cluster setting (endpoints, member id, TTL, margin, weight) is invalid."""


def _check_member(member: str) -> str:
    if not isinstance(member, str) or not member or "/" in member:
        raise ClusterConfigError(f"member id must be a non-empty string without '/' ({member!r})")
    return member


def _endpoints(urls: Iterable[str]) -> tuple[str, ...]:
    if isinstance(urls, str):
        return (urls,)
    return tuple(urls)


@attrs.frozen
class ClusterConfig:
    """Where the cluster's etcd is and who this member is.

    Args:
        endpoints: etcd client URLs (``http://10.0.0.5:2379``).
        member: This member's id, unique in the cluster (default: host name and pid).
        ttl: The member lease's TTL in seconds (whole seconds: etcd's unit). A
            dead member's keys move after about this long. It is renewed every
            :attr:`renew_interval`; the member's loop must never be busy for
            more than about ¾ (TTL - margin) at once (see docs/scaling.md).
        margin: Seconds before its lease could expire at which a member that
            could not renew has stopped its children (default ``ttl / 4``).
            Children's shutdown grace must be at most ``margin / 2``.
        prefix: The etcd key prefix of this pool (one per pool).
        weight: This member's capacity weight in placement.
        request_timeout: Seconds one etcd request may take (default ``ttl / 5``).
    """

    endpoints: tuple[str, ...] = attrs.field(converter=_endpoints)
    member: str = attrs.field(factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    ttl: int = 10
    margin: float | None = None
    prefix: str = "/trio-supervision/pool/"
    weight: float = 1.0
    request_timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        if not self.endpoints or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in self.endpoints
        ):
            raise ClusterConfigError(f"endpoints must be http(s) URLs (got {self.endpoints!r})")
        _check_member(self.member)
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int) or self.ttl < 2:
            raise ClusterConfigError(f"ttl must be whole seconds >= 2 (got {self.ttl!r})")
        if not 0 < self.effective_margin < self.ttl / 2:
            raise ClusterConfigError(f"margin must be in (0, ttl/2) (got {self.margin!r})")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight)) or (
            self.weight <= 0
        ):
            raise ClusterConfigError(f"weight must be finite and > 0 (got {self.weight!r})")
        if not self.prefix.endswith("/"):
            raise ClusterConfigError(f"prefix must end with '/' (got {self.prefix!r})")

    @property
    def effective_margin(self) -> float:
        """The margin in force."""
        return self.ttl / 4 if self.margin is None else float(self.margin)

    @property
    def renew_interval(self) -> float:
        """Seconds between lease renewals: four fit between a renewal and its deadline.

        The deadline is the last renewal's sending + TTL - margin; renewing
        every quarter of that window lets three renewals in a row be lost or
        late (a slow round trip, a loop busy for a moment) before the member
        must stop its children.
        """
        return (self.ttl - self.effective_margin) / 4

    @property
    def effective_timeout(self) -> float:
        """The request timeout in force."""
        return self.ttl / 5 if self.request_timeout is None else float(self.request_timeout)


def cluster_config_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    endpoints: Sequence[str] | None = None,
    member: str | None = None,
    prefix: str | None = None,
) -> ClusterConfig | None:
    """The cluster configured by arguments, else by the environment; ``None`` for embedded.

    Arguments win over ``TRIO_SUPERVISION_ETCD`` (comma-separated URLs),
    ``TRIO_SUPERVISION_MEMBER``, ``TRIO_SUPERVISION_PREFIX`` and
    ``TRIO_SUPERVISION_TTL``. No endpoints anywhere means embedded (``None``).

    Raises:
        ClusterConfigError: a setting is invalid (it is named).
    """
    env = os.environ if environ is None else environ
    urls = list(endpoints or [u for u in env.get(ENV_ENDPOINTS, "").split(",") if u.strip()])
    if not urls:
        return None
    options: dict[str, Any] = {}
    if member or env.get(ENV_MEMBER):
        options["member"] = member or env[ENV_MEMBER]
    if prefix or env.get(ENV_PREFIX):
        options["prefix"] = prefix or env[ENV_PREFIX]
    if env.get(ENV_TTL):
        try:
            options["ttl"] = int(env[ENV_TTL])
        except ValueError:
            msg = f"{ENV_TTL} must be whole seconds ({env[ENV_TTL]!r})"
            raise ClusterConfigError(msg) from None
    return ClusterConfig(endpoints=[u.strip() for u in urls], **options)


def _check_max_starting(value: object, name: str = "max_starting") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClusterConfigError(f"{name} must be a whole number >= 1 (got {value!r})")
    return value


def max_starting_from_env(
    environ: Mapping[str, str] | None = None, *, max_starting: int | None = None
) -> int | None:
    """How many keys' trees a member starts at once: the argument, else the environment.

    ``max_starting`` wins over ``TRIO_SUPERVISION_MAX_STARTING``; ``None``
    when neither says (the pool's own value stands).

    Raises:
        ClusterConfigError: not a whole number >= 1 (the argument or the variable is named).
    """
    if max_starting is not None:
        return _check_max_starting(max_starting)
    env = os.environ if environ is None else environ
    text = env.get(ENV_MAX_STARTING, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ClusterConfigError(f"{ENV_MAX_STARTING} must be a whole number >= 1 ({text!r})")
    return value


@attrs.frozen
class Claim:
    """A running key's proof of ownership, for its child: see :func:`current_claim`.

    Attributes:
        key: The key.
        token: Its fencing token: the owner key's create revision in etcd,
            larger for every later owner (embedded: a counter). Give it to
            anything that can reject a stale writer.
        member: The member it runs on.
    """

    key: str
    token: int
    member: str


_CLAIM: contextvars.ContextVar[Claim] = contextvars.ContextVar("supervisor_cluster_claim")


def current_claim() -> Claim:
    """The claim of the key whose child calls this (from inside a pool's child).

    Raises:
        LookupError: not called from a child of a keyed pool.
    """
    try:
        return _CLAIM.get()
    except LookupError:
        raise LookupError("current_claim() called outside a keyed pool's child") from None


@attrs.define(eq=False)
class _Held:
    """A key this member owns in etcd, and its child's run if it has one."""

    token: int
    state: KeyState = "stopped"
    scope: trio.CancelScope | None = None
    done: trio.Event | None = None
    handle: SupervisorHandle | None = None
    error: str | None = None


@attrs.define(eq=False)
class Renewals:
    """How this member's lease renewals went: what to read when a member churns.

    Attributes:
        sent: Renewals sent.
        failed: Renewals with no answer in time (or an error answer).
        last_rtt: Seconds from sending the last answered renewal to handling its answer.
        max_rtt: The longest such round trip so far.
        misses: Times the member's own deadline passed with no renewal (it
            stopped every child).
        lost: Times etcd said the lease was gone (the member registered again).
    """

    sent: int = 0
    failed: int = 0
    last_rtt: float = 0.0
    max_rtt: float = 0.0
    misses: int = 0
    lost: int = 0

    def to_dict(self) -> dict[str, float]:
        """The counters, JSON-serialisable (round trips in ms)."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "last_rtt_ms": round(self.last_rtt * 1000, 1),
            "max_rtt_ms": round(self.max_rtt * 1000, 1),
            "misses": self.misses,
            "lost": self.lost,
        }


@attrs.define(eq=False)
class _View:
    """What this member knows of the cluster from its last range and the watch since."""

    members: dict[str, float] = attrs.Factory(dict)
    owners: dict[str, tuple[str, int, int]] = attrs.Factory(dict)  # key -> member, token, lease
    ready: bool = False


class KeyedPool:
    """A set of keys, each running as a child on exactly one member of a cluster.

    Not constructed directly: see :func:`open_keyed_pool`.
    """

    def __init__(
        self,
        keys: Iterable[str],
        factory: Callable[[str], ChildSpec],
        config: ClusterConfig | None,
        hooks: Sequence[Hook] | None,
        restart_after: float,
        name: str = "pool",
        max_starting: int = DEFAULT_MAX_STARTING,
    ) -> None:
        self.name = name
        self._keys = _check_keys(keys)
        self._factory = factory
        self.config = config
        self._hooks = hooks
        self._restart_after = restart_after
        self.member = config.member if config else EMBEDDED_MEMBER
        self._weight = config.weight if config else 1.0
        self._client: EtcdClient | None = None
        self._lease = 0
        self._member_rev = 0
        self._view = _View()
        self._held: dict[str, _Held] = {}
        self._handoffs: set[str] = set()
        self._changed = trio.Event()
        self._renewed = trio.Event()
        self._safe = config is None
        self._stop_at = math.inf if config is None else -math.inf
        self._guard_scope: trio.CancelScope | None = None
        self._watch_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._limiter = trio.CapacityLimiter(32)
        # keys' trees starting at once: a storm of starts (a member taking over a
        # hundred accounts) would otherwise hold the loop long enough to starve the
        # lease renewal, miss the deadline, stop everything and start it all again
        self._starting = trio.CapacityLimiter(max_starting)
        # handoffs in flight: a key's child stopped and its key released, and no other
        # member owning it yet. The new owner takes a key only when it can start it at
        # once, so this window paces the old owner to the new one's starts: each key is
        # down for one stop and one start, not for the queue of all the others
        # (one window for all new owners: one per owner, measured, doubled the keys in
        # flight and the gaps with them; a key waits at most TTL for its new owner)
        self._handing = trio.CapacityLimiter(max_starting)
        self._max_starting = max_starting
        self._owners_changed = trio.Event()
        self._placed: tuple[object, dict[str, str]] = (None, {})
        # why this member may not run children now (None: it may): /readyz says it
        self._unsafe_why: str | None = None if config is None else "not registered with etcd yet"
        self._tokens = 0
        self._leaving = False
        self.takeovers = 0
        self.renewals = Renewals()
        # where the pool's own events go (set by _serve, in the opener's context)
        self._event_hooks: tuple[ContainedHook, ...] = ()
        self._event_stream: EventStream | None = None
        self._event_path = name

    # -- public -----------------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of the pool (on any member)."""
        return tuple(self._keys)

    def owned(self) -> dict[str, int]:
        """The keys this member owns now, each with its fencing token."""
        return {key: held.token for key, held in self._held.items()}

    def running(self) -> list[str]:
        """The keys whose child runs on this member now."""
        return sorted(k for k, h in self._held.items() if h.state in ("starting", "running"))

    def not_ready(self) -> str | None:
        """Why this member is not ready to run its keys now; ``None`` when it is.

        Not ready while it has no proof of ownership (not registered yet, its
        lease lost, its deadline passed without a renewal), while it has not
        read the cluster yet, and while it leaves. /readyz names the reason.
        """
        if self._leaving or not self._safe:
            return self._unsafe_why or "no proof of ownership"
        if self.config is not None and self.member not in self._view.members:
            return "reading the cluster from etcd"
        return None

    def set_keys(self, keys: Iterable[str]) -> None:
        """Change the set of keys (every member must be given the same set)."""
        self._keys = _check_keys(keys)
        self._changed.set()

    def summary(self) -> dict[str, Any]:
        """The cluster as this member sees it, without the keys' trees (cheap, JSON-serialisable).

        ``members`` (id → weight), ``keys_per_member`` (owners as etcd holds
        them), ``handoffs`` (keys this member is stopping to hand over),
        ``pending`` (keys placed here, not yet acquired), ``states`` (this
        member's keys by state), ``takeovers`` (keys acquired so far) and
        ``max_starting`` (keys' trees it starts or stops at once).
        ``safe_for`` is how long this member may still run its children
        without a renewal (``None``: embedded, for ever); ``not_ready`` says
        why it may not run them now (:meth:`not_ready`).
        """
        now = trio.current_time()
        per_member: dict[str, int] = {}
        for member, _, _ in self._view.owners.values():
            per_member[member] = per_member.get(member, 0) + 1
        states: dict[str, int] = {}
        for held in self._held.values():
            states[held.state] = states.get(held.state, 0) + 1
        placed, mine = self._placement(), self.member
        return {
            "name": self.name,
            "member": self.member,
            "mode": "embedded" if self.config is None else "etcd",
            "safe": self._safe,
            "not_ready": self.not_ready(),
            "safe_for": _seconds_left(self._stop_at, now),
            "members": dict(sorted(self._view.members.items())),
            "keys": len(self._keys),
            "keys_per_member": dict(sorted(per_member.items())),
            "handoffs": sorted(self._handoffs),
            "pending": sorted(k for k, m in placed.items() if m == mine and k not in self._held),
            "states": dict(sorted(states.items())),
            "takeovers": self.takeovers,
            "max_starting": int(self._starting.total_tokens),
            "renewals": self.renewals.to_dict(),
        }

    def snapshot(self) -> dict[str, Any]:
        """:meth:`summary`, and per owned key its fencing token, state and tree snapshot."""
        return {
            **self.summary(),
            "owned": {
                key: {
                    "token": held.token,
                    "state": held.state,
                    "error": held.error,
                    "tree": held.handle.snapshot().to_dict() if held.handle else None,
                }
                for key, held in sorted(self._held.items())
            },
        }

    # -- running ------------------------------------------------------------------

    def _find_event_sinks(self) -> None:
        """Inside a tree's child, the pool's events go to that tree's hooks and subscribers."""
        enclosing = current_incarnation()
        owner = None if enclosing is None else enclosing.owner
        if enclosing is not None and owner is not None:
            self._event_hooks = contain(self._hooks or (), owner.hooks)
            self._event_stream = owner.stream
            self._event_path = f"{owner.path}/{enclosing.child}"
        else:
            self._event_hooks = contain((logging_hook,) if self._hooks is None else self._hooks)

    def _emit(self, kind: Callable[..., Event], child: str, **fields: Any) -> None:
        """Publish a pool event about ``child`` (a key, or a member id), seen by this member."""
        event = kind(
            supervisor=self.name,
            path=self._event_path,
            child=child,
            member=self.member,
            time=trio.current_time(),
            **fields,
        )
        for hook in self._event_hooks:
            hook(event)
        if self._event_stream is not None:
            self._event_stream.publish(event)

    def _lose(self, cause: str) -> None:
        for key, held in sorted(self._held.items()):
            if cause != "deadline" or held.state != "stopped":  # stopped: the key is still ours
                self._emit(KeyLost, key, token=held.token, cause=cause)

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        self._find_event_sinks()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.config is None:
                self._view.members = {self.member: 1.0}
                self._view.ready = True
                nursery.start_soon(self._reconcile_loop)
                self._changed.set()
                task_status.started()
                return
            nursery.start_soon(self._sessions)
            task_status.started()

    async def _sessions(self) -> None:
        """Register under a lease, serve until the lease is lost, then again."""
        assert self.config is not None
        config = self.config
        async with EtcdClient(config.endpoints, timeout=config.effective_timeout) as client:
            self._client = client
            while True:
                try:
                    await self._register(client, config)
                except (EtcdUnavailable, EtcdRequestFailed) as error:
                    logger.warning("member %s cannot register: %s", self.member, error)
                    self._unsafe_why = f"cannot register with etcd ({type(error).__name__})"
                    await trio.sleep(min(1.0, config.ttl / 4))
                    continue
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._keepalive, client, config)
                        nursery.start_soon(self._guard)
                        nursery.start_soon(self._watch, client, config)
                        nursery.start_soon(self._reconcile_loop)
                except* _LeaseLost:
                    logger.warning("member %s lost its lease; registering again", self.member)
                    self._unsafe_why = "its lease is lost: registering again"
                    self._lose("lease")
                self._safe = False
                await self._stop_all()
                self._held.clear()
                self._handoffs.clear()
                self._view = _View()
                # members that lost their leases together (etcd lost its data, a long
                # stall) come back spread out, not as one storm of registrations and starts
                await trio.sleep(random.uniform(0, config.ttl / 4))

    async def _register(self, client: EtcdClient, config: ClusterConfig) -> None:
        sent = trio.current_time()
        lease, granted = await client.grant(config.ttl)
        value = json.dumps({"weight": config.weight}).encode()
        revision = await client.create(self._member_key(self.member), value, lease)
        if revision is None:
            await client.revoke(lease)
            raise EtcdRequestFailed(
                "/v3/kv/txn", 6, f"member id {self.member!r} is registered (waiting for its lease)"
            )
        self._lease, self._member_rev = lease, revision
        self._renew(sent, min(granted, config.ttl))

    def _renew(self, sent: float, ttl: float) -> None:
        assert self.config is not None
        self._stop_at = sent + ttl - self.config.effective_margin
        if self._guard_scope is not None:
            self._guard_scope.deadline = self._stop_at
        was_safe, self._safe = self._safe, trio.current_time() < self._stop_at
        if self._safe:
            self._unsafe_why = None
            self._renewed.set()
            if not was_safe:
                self._changed.set()

    async def _keepalive(self, client: EtcdClient, config: ClusterConfig) -> None:
        interval = config.renew_interval
        while True:
            sent = trio.current_time()
            self.renewals.sent += 1
            try:
                left = await client.keepalive(self._lease)
            except (EtcdUnavailable, EtcdRequestFailed) as error:
                self.renewals.failed += 1
                logger.warning("member %s cannot renew its lease: %s", self.member, error)
                await trio.sleep(min(0.25, interval))
                continue
            rtt = trio.current_time() - sent
            self.renewals.last_rtt, self.renewals.max_rtt = rtt, max(rtt, self.renewals.max_rtt)
            if left <= 0:
                self.renewals.lost += 1
                raise _LeaseLost
            self._renew(sent, min(left, config.ttl))
            await trio.sleep_until(sent + interval)

    async def _guard(self) -> None:
        """Stop every child when the member's deadline passes with no renewal."""
        while True:
            with trio.CancelScope(deadline=self._stop_at) as scope:
                self._guard_scope = scope
                await trio.sleep_forever()
            self._guard_scope = None
            if trio.current_time() < self._stop_at:
                continue  # renewed meanwhile
            self._safe = False
            self._unsafe_why = "no lease renewal in time: its children are stopped"
            self._renewed = trio.Event()
            self.renewals.misses += 1
            self._lose("deadline")
            if self._held:
                logger.warning(
                    "member %s could not renew in time: stopping %d children",
                    self.member,
                    len(self.running()),
                )
            await self._stop_all()
            await self._renewed.wait()
            if self._watch_scope is not None:
                self._watch_scope.cancel()  # read the cluster afresh

    async def _watch(self, client: EtcdClient, config: ClusterConfig) -> None:
        while True:
            with trio.CancelScope() as scope:
                self._watch_scope = scope
                try:
                    revision, kvs = await client.range_prefix(config.prefix)
                    self._load(kvs)
                    async with client.watch_prefix(config.prefix, revision + 1) as batches:
                        async for events in batches:
                            for event in events:
                                self._apply(event)
                            self._changed.set()
                except (EtcdUnavailable, EtcdRequestFailed) as error:
                    logger.info("member %s: watch ended (%s); reading again", self.member, error)
            await trio.sleep(0.25)

    def _load(self, kvs: list[KeyValue]) -> None:
        before = self._view.members
        self._view = _View()
        for kv in kvs:
            self._apply(WatchEvent("put", kv))
        self._view.ready = True
        self._owners_changed.set()
        self._owners_changed = trio.Event()
        # what changed while this member did not watch (or everything, the first time)
        for member in sorted(self._view.members.keys() - before.keys()):
            self._emit(MemberJoined, member)
        for member in sorted(before.keys() - self._view.members.keys()):
            self._emit(MemberLeft, member)
        self._changed.set()

    def _apply(self, event: WatchEvent) -> None:
        assert self.config is not None
        rest = event.kv.key[len(self.config.prefix) :]
        kind, _, name = rest.partition("/")
        if kind == "members":
            known = name in self._view.members
            if event.kind == "delete":
                self._view.members.pop(name, None)
                if known and self._view.ready:
                    self._emit(MemberLeft, name)
            else:
                self._view.members[name] = _weight_of(event.kv.value)
                if not known and self._view.ready:
                    self._emit(MemberJoined, name)
        elif kind == "owners":
            self._owners_changed.set()
            self._owners_changed = trio.Event()
            if event.kind == "delete":
                self._view.owners.pop(name, None)
            else:
                owner = event.kv.value.decode(errors="replace")
                self._view.owners[name] = (owner, event.kv.create_revision, event.kv.lease)
                ours = owner == self.member and event.kv.lease == self._lease
                if ours and name not in self._held:
                    # a create whose answer was lost (or is still on its way): ours all the same
                    self._held[name] = _Held(token=event.kv.create_revision)
                    self.takeovers += 1
                    self._emit(KeyAcquired, name, token=event.kv.create_revision)

    def _placement(self) -> dict[str, str]:
        """Each key's owner among the live members (cached until members or keys change)."""
        members = self._view.members
        if not members:
            return {}
        basis = (self._keys, tuple(members.items()))
        cached, placed = self._placed
        if not (isinstance(cached, tuple) and cached[0] is basis[0] and cached[1] == basis[1]):
            placed = {key: rendezvous_owner(key, members) for key in self._keys}
            self._placed = (basis, placed)
        return placed

    async def _reconcile_loop(self) -> None:
        # handoffs run beside the passes: a pass never waits for a child to stop
        async with trio.open_nursery() as handoffs:
            while True:
                with trio.move_on_after(1.0):  # a periodic pass retries what failed
                    await self._changed.wait()
                self._changed = trio.Event()
                if self._safe and self._view.ready and not self._leaving:
                    await self._reconcile(handoffs)

    async def _reconcile(self, handoffs: trio.Nursery) -> None:
        placed = self._placement()
        if self.member not in self._view.members:
            return  # our own registration not seen yet
        for key, held in list(self._held.items()):
            if placed.get(key) != self.member:
                if key not in self._handoffs:
                    self._handoffs.add(key)
                    handoffs.start_soon(self._hand_over, key)
            elif held.state == "stopped":
                self._start(key, held)
        wanted = [
            key
            for key, member in placed.items()
            if member == self.member and key not in self._held and key not in self._view.owners
        ]
        if self.config is not None:
            # take only what can start now: a key left unowned meanwhile is the old
            # owner's signal to wait before it stops the next one (see _hand_over)
            starting = sum(1 for held in self._held.values() if held.state == "starting")
            wanted = wanted[: max(0, self._max_starting - starting)]
        # one transaction per batch of keys, not one round trip per key
        async with trio.open_nursery() as nursery:
            for at in range(0, len(wanted), MAX_BATCH):
                nursery.start_soon(self._acquire, wanted[at : at + MAX_BATCH])

    async def _acquire(self, keys: list[str]) -> None:
        if self._client is None:
            tokens: dict[str, int] = {}
            for key in keys:
                self._tokens += 1
                tokens[key] = self._tokens
        else:
            async with self._limiter:
                if not self._safe:
                    return
                names = {self._owner_key(key): key for key in keys}
                try:
                    created = await self._client.create_many(
                        list(names), self.member.encode(), self._lease
                    )
                except (EtcdUnavailable, EtcdRequestFailed) as error:
                    logger.info(
                        "member %s could not acquire %d keys: %s", self.member, len(keys), error
                    )
                    return
            tokens = {names[name]: token for name, token in created.items()}
        placed = self._placement()
        for key, token in tokens.items():
            if key in self._held:
                continue  # the watch saw the create first (and the pass starts it)
            held = self._held[key] = _Held(token=token)
            self._view.owners[key] = (self.member, token, self._lease)
            self.takeovers += 1
            self._emit(KeyAcquired, key, token=token)
            if self._safe and placed.get(key) == self.member:
                self._start(key, held)
            else:
                self._changed.set()

    def _wake(self) -> None:
        """Ask for a reconciling pass (``_changed`` is replaced after each)."""
        self._changed.set()

    def _start(self, key: str, held: _Held) -> None:
        assert self._nursery is not None
        if not self._safe or held.state != "stopped":
            return
        held.state = "starting"
        held.scope = trio.CancelScope()
        held.done = trio.Event()
        self._nursery.start_soon(self._run_key, key, held)

    async def _run_key(self, key: str, held: _Held) -> None:
        assert held.scope is not None
        assert held.done is not None
        _CLAIM.set(Claim(key, held.token, self.member))
        try:
            with held.scope:
                while True:
                    started = _Started(held, self._starting, self._wake)
                    await self._starting.acquire_on_behalf_of(started)
                    try:
                        spec = self._tree(key)
                        await run_supervisor(spec, name=key, hooks=self._hooks, task_status=started)
                        held.error = None
                    except Exception as error:  # the key's tree gave up: try it again later
                        held.error = f"{type(error).__name__}: {error}"
                        logger.error("member %s: key %r failed: %s", self.member, key, held.error)
                    finally:
                        started.release()
                    held.state, held.handle = "failed", None
                    await trio.sleep(self._restart_after)
                    held.state = "starting"
        finally:
            held.handle = None
            held.state = "stopped"
            held.done.set()

    def _tree(self, key: str) -> SupervisorSpec:
        child = self._factory(key)
        if not isinstance(child, ChildSpec):
            msg = f"the factory gave {child!r} for key {key!r}, not a ChildSpec"
            raise TypeError(msg)
        limit = self.config.effective_margin / 2 if self.config else math.inf
        grace = 0.0 if child.shutdown is BRUTAL_KILL else child.shutdown
        if self.config is not None and (grace is INFINITY or float(grace) > limit):
            msg = (
                f"key {key!r}: child {child.id!r} has shutdown {child.shutdown!r}, more than "
                f"margin/2 = {limit} s: it could outlive the lease"
            )
            raise ValueError(msg)
        return SupervisorSpec(name=key, children=[child])

    async def _stop(self, held: _Held) -> None:
        if held.scope is not None and held.done is not None:
            held.state = "stopping"
            held.scope.cancel()
            await held.done.wait()

    async def _stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for held in list(self._held.values()):
                nursery.start_soon(self._stop, held)

    async def _hand_over(self, key: str) -> None:
        """Release ``key``, holding a place in the window until another member owns it."""
        async with self._handing:
            if not self._leaving and self._placement().get(key) == self.member:
                self._handoffs.discard(key)  # placed here again while it waited its turn
                return
            if await self._release(key) and self.config is not None:
                # bounded: a new owner that never comes (it died) frees the place after TTL
                with trio.move_on_after(self.config.ttl):
                    while not self._taken_elsewhere(key):
                        await self._owners_changed.wait()

    def _taken_elsewhere(self, key: str) -> bool:
        """Whether another member owns ``key`` now, or no other member will."""
        owner = self._view.owners.get(key)
        if owner is not None:
            return owner[0] != self.member
        placed = self._placement()
        if key not in placed or not self._view.members.keys() - {self.member}:
            return True  # no longer a key, or no one else to take it
        # leaving, this member still counts itself until its watch sees its own leave
        return not self._leaving and placed[key] == self.member

    async def _release(self, key: str) -> bool:
        """Stop ``key``'s child, then delete its owner key; whether it is released."""
        held = self._held.get(key)
        if held is None:
            return False
        self._handoffs.add(key)
        try:
            await self._stop(held)
            if self._client is not None:
                async with self._limiter:
                    try:
                        await self._client.delete_if(self._owner_key(key), held.token)
                    except (EtcdUnavailable, EtcdRequestFailed) as error:
                        logger.info("member %s could not release %r: %s", self.member, key, error)
                        return False  # stays held, stopped; the next pass tries again
            if self._held.get(key) is not held:
                return False
            del self._held[key]
            if self._view.owners.get(key, ("", 0, 0))[1] == held.token:
                del self._view.owners[key]
            self._emit(KeyReleased, key, token=held.token)
            return True
        finally:
            self._handoffs.discard(key)

    async def _leave(self, budget: float) -> None:
        """Hand every key over: leave the membership, stop and release each key, end the lease.

        Keys are handed over one by one, paced by the new owners' starts (at
        most ``max_starting`` released and not yet owned elsewhere); what is
        not handed over within ``budget`` seconds is stopped at once and
        released with the lease.
        """
        self._leaving = True
        self._unsafe_why = "leaving the cluster: handing its keys over"
        client = self._client
        if client is not None and self._safe:
            try:
                await client.delete_if(self._member_key(self.member), self._member_rev)
            except (EtcdUnavailable, EtcdRequestFailed) as error:
                logger.warning("member %s could not leave cleanly: %s", self.member, error)
        with trio.move_on_after(budget):
            async with trio.open_nursery() as nursery:
                for key in list(self._held):
                    nursery.start_soon(self._hand_over, key)
        await self._stop_all()
        if client is not None and self._lease:
            try:
                await client.revoke(self._lease)
            except (EtcdUnavailable, EtcdRequestFailed) as error:
                logger.warning("member %s could not revoke its lease: %s", self.member, error)

    def _member_key(self, member: str) -> str:
        assert self.config is not None
        return f"{self.config.prefix}members/{member}"

    def _owner_key(self, key: str) -> str:
        assert self.config is not None
        return f"{self.config.prefix}owners/{key}"


class _LeaseLost(Exception):
    """etcd no longer knows this member's lease: every key it held is gone."""


class _Started:
    """The task_status for a key's tree: marks it running and frees its place in the queue."""

    def __init__(
        self, held: _Held, starting: trio.CapacityLimiter, freed: Callable[[], None]
    ) -> None:
        self._held = held
        self._starting: trio.CapacityLimiter | None = starting
        self._freed = freed

    def started(self, value: Any = None) -> None:
        self._held.handle = value
        self._held.state = "running"
        self.release()

    def release(self) -> None:
        """Give the place back (once: on start, or when the start failed or was cancelled)."""
        if self._starting is not None:
            self._starting.release_on_behalf_of(self)
            self._starting = None
            self._freed()  # a pass may take a key waiting for this place


def _seconds_left(deadline: float, now: float) -> float | None:
    return None if math.isinf(deadline) else round(max(0.0, deadline - now), 3)


def _weight_of(value: bytes) -> float:
    try:
        weight = json.loads(value).get("weight", 1.0)
    except (ValueError, AttributeError):
        return 1.0
    if isinstance(weight, int | float) and math.isfinite(weight) and weight > 0:
        return float(weight)
    return 1.0


def _check_keys(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, str):
        raise TypeError(f"keys must be an iterable of strings, not one string ({keys!r})")
    checked = list(dict.fromkeys(keys))
    for key in checked:
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"a key must be a non-empty string without '/' (got {key!r})")
    return checked


@asynccontextmanager
async def open_keyed_pool(
    keys: Iterable[str],
    factory: Callable[[str], ChildSpec],
    *,
    cluster: ClusterConfig | None = None,
    hooks: Sequence[Hook] | None = None,
    restart_after: float = 5.0,
    name: str = "pool",
    max_starting: int = DEFAULT_MAX_STARTING,
) -> AsyncIterator[KeyedPool]:
    """Run a keyed pool for the duration of an ``async with`` block.

    Every member of a cluster opens the pool with the same ``keys``, factory
    and ``cluster.prefix``; each key runs on one member as a one-child tree
    (the factory's :class:`~specs.ChildSpec`, restarted by its own policy; if
    that tree gives up, the key's tree starts again after ``restart_after``
    seconds on the same member). Leaving the block hands this member's keys
    over: it leaves the membership, stops each child and then releases its key,
    and ends its lease.

    Args:
        keys: The keys (strings without ``/``), the same on every member.
        factory: ``key -> ChildSpec``; inside the child, :func:`current_claim`
            gives its fencing token.
        cluster: Where etcd is and who this member is; ``None`` runs every key
            here (embedded).
        hooks: For each key's tree and the pool's own events
            (:class:`~supervisor.events.KeyAcquired`, ``KeyReleased``,
            ``KeyLost``, ``MemberJoined``, ``MemberLeft``; default:
            :func:`~supervisor.logging_hook`). Inside a tree's child, those
            events also reach that tree's hooks and ``subscribe()`` streams,
            with the child's path.
        restart_after: Seconds before a key whose tree gave up runs again.
        name: The pool's name in the program's operator views (/tree,
            /metrics' ``pool`` label, the tree view).
        max_starting: How many keys' trees may be starting at once on this
            member (the others wait their turn, shown as ``starting``), and
            how many it stops at once when it hands keys over: a member taking
            over many keys must not starve its own lease renewal.

    Raises:
        ClusterConfigError: ``max_starting`` is not a whole number >= 1.

    Inside :func:`supervisor.run` (and ``python -m supervisor run``) the pool
    shows itself in those views while it is open.
    """
    _check_max_starting(max_starting)
    pool = KeyedPool(keys, factory, cluster, hooks, restart_after, name, max_starting)
    registry = _POOLS.get(None)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool._serve)
        if registry is not None:
            registry.pools.append(pool)
        try:
            yield pool
        finally:
            if registry is not None:
                registry.pools.remove(pool)
            with trio.CancelScope(shield=True):
                timeout = cluster.ttl if cluster else math.inf
                with trio.move_on_after(timeout):
                    await pool._leave(budget=timeout / 2)
                await pool._stop_all()
            nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class PoolRegistry:
    """The keyed pools open in a program, for its operator views (/tree, /metrics, tree view)."""

    pools: list[KeyedPool] = attrs.Factory(list)

    def summaries(self) -> list[dict[str, Any]]:
        """Each open pool's :meth:`KeyedPool.summary`, by name."""
        return sorted((pool.summary() for pool in self.pools), key=lambda s: str(s["name"]))

    def not_ready(self) -> dict[str, str]:
        """Each open pool whose member is not ready, with why: ``{"cluster accounts": "..."}``."""
        reasons = {f"cluster {pool.name}": pool.not_ready() for pool in self.pools}
        return {name: why for name, why in sorted(reasons.items()) if why is not None}


_POOLS: contextvars.ContextVar[PoolRegistry] = contextvars.ContextVar("supervisor_pools")


@contextmanager
def registering_pools() -> Iterator[PoolRegistry]:
    """Pools opened by tasks started inside this block register in the registry it yields.

    Tasks inherit the context they were started in, so a pool opened anywhere
    in a tree started inside the block (a child of a child...) is seen.
    """
    registry = PoolRegistry()
    token = _POOLS.set(registry)
    try:
        yield registry
    finally:
        _POOLS.reset(token)


def _check_key_tuple(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(_check_keys(keys))


def _check_positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive number of seconds (got {value!r})")


@attrs.frozen
class KeyedPoolSpec:
    """A keyed pool as a whole program: what ``supervisor.run`` and the CLI accept.

    ``python -m supervisor run module:pool --etcd URL --member ID`` (or the
    ``TRIO_SUPERVISION_*`` environment) runs it as one member of the cluster;
    without endpoints, embedded. The program's tree is a root supervisor named
    ``name`` with one child, ``keys``, that holds the pool open
    (:meth:`tree`); each key's tree is the pool's, shown in /tree's
    ``cluster`` part.

    Args:
        keys: The keys (strings without ``/``), the same on every member.
        factory: ``key -> ChildSpec``, as for :func:`open_keyed_pool`.
        name: The root's and the pool's name.
        restart_after: Seconds before a key whose tree gave up runs again.
        max_starting: Keys' trees starting (or stopping, in a handoff) at once
            on a member; ``--max-starting`` / ``TRIO_SUPERVISION_MAX_STARTING``
            override it for one member.
    """

    keys: tuple[str, ...] = attrs.field(converter=_check_key_tuple)
    factory: Callable[[str], ChildSpec] = attrs.field(validator=attrs.validators.is_callable())
    name: str = attrs.field(default="pool", validator=attrs.validators.instance_of(str))
    restart_after: float = attrs.field(default=5.0, validator=_check_positive)
    max_starting: int = attrs.field(
        default=DEFAULT_MAX_STARTING, validator=lambda _, __, value: _check_max_starting(value)
    )

    def tree(self, cluster: ClusterConfig | None, hooks: Sequence[Hook] | None) -> SupervisorSpec:
        """The program's tree: one child holding the pool open (keys' trees get ``hooks``)."""
        holder = ChildSpec(
            id="keys",
            start=_hold_pool,
            args=(self, cluster, hooks),
            # leaving hands the keys over (bounded by the TTL); the program's grace bounds all
            shutdown=INFINITY,
        )
        return SupervisorSpec(name=self.name, children=[holder])


async def _hold_pool(
    spec: KeyedPoolSpec,
    cluster: ClusterConfig | None,
    hooks: Sequence[Hook] | None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with open_keyed_pool(
        spec.keys,
        spec.factory,
        cluster=cluster,
        hooks=hooks,
        restart_after=spec.restart_after,
        name=spec.name,
        max_starting=spec.max_starting,
    ):
        task_status.started()
        await trio.sleep_forever()
