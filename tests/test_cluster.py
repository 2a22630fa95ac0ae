"""The keyed pool: placement, the embedded pool, the etcd client, and member processes
on a real etcd under kill -9, SIGTERM, a join, a partition and an etcd restart."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import specs
import supervisor
from supervisor import events, run_supervisor
from supervisor._cluster import max_starting_from_env, registering_pools
from supervisor._health import HealthApp, Metrics
from supervisor.cluster import (
    ClusterConfig,
    ClusterConfigError,
    EtcdClient,
    EtcdUnavailable,
    KeyedPool,
    KeyedPoolSpec,
    cluster_config_from_env,
    current_claim,
    open_keyed_pool,
    rendezvous_assignment,
    rendezvous_owner,
)
from workers.testing import open_tcp_relay

from .cluster_harness import ROOT, Etcd, SessionServer, free_port, serving_cli, start_member

KEYS = [f"key-{n}" for n in range(12)]
TTL = 4
GUARD = 90  # a hang guard, generous for a loaded machine; no assert is on elapsed time


# -- placement ---------------------------------------------------------------------


@given(st.text(max_size=20), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8))
def test_owner_is_a_member(key: str, members: list[str]) -> None:
    """The owner of any key is one of the members."""
    assert rendezvous_owner(key, members) in members


def test_owner_is_stable_across_processes() -> None:
    """Another interpreter (other hash seed) places every key on the same member."""
    code = (
        "from supervisor.cluster import rendezvous_owner as o;"
        "print([o(f'k{n}', ['a', 'b', 'c']) for n in range(40)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "777"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == str(
        [rendezvous_owner(f"k{n}", ["a", "b", "c"]) for n in range(40)]
    )


def test_a_join_moves_only_keys_to_the_new_member() -> None:
    """Going from 4 to 5 members moves about 1/5 of the keys, all of them to the new one."""
    keys = [f"account-{n}" for n in range(5000)]
    before = rendezvous_assignment(keys, ["a", "b", "c", "d"])
    after = rendezvous_assignment(keys, ["a", "b", "c", "d", "e"])
    moved = [k for k in keys if before[k] != after[k]]
    assert {after[k] for k in moved} == {"e"}
    assert 0.15 < len(moved) / len(keys) < 0.25


def test_weights_scale_shares() -> None:
    """A member of weight 3 gets about three times the keys of one of weight 1."""
    counts = Counter(rendezvous_assignment([f"k{n}" for n in range(8000)], {"big": 3, "small": 1}))
    shares = Counter(
        rendezvous_assignment([f"k{n}" for n in range(8000)], {"big": 3, "small": 1}).values()
    )
    assert len(counts) == 8000
    assert 5600 < shares["big"] < 6400


def test_placement_rejects_no_members_and_bad_weights() -> None:
    """No members, or a weight that is not positive, is a clear error."""
    with pytest.raises(ValueError, match="no members"):
        rendezvous_owner("k", [])
    with pytest.raises(ValueError, match="'m'"):
        rendezvous_owner("k", {"m": 0})


# -- configuration -----------------------------------------------------------------


def test_config_from_env_and_arguments() -> None:
    """Endpoints and member id come from arguments first, else the environment."""
    env = {
        "TRIO_SUPERVISION_ETCD": "http://e1:2379,http://e2:2379",
        "TRIO_SUPERVISION_MEMBER": "m1",
    }
    config = cluster_config_from_env(env)
    assert config is not None
    assert config.endpoints == ("http://e1:2379", "http://e2:2379")
    assert config.member == "m1"
    chosen = cluster_config_from_env(env, endpoints=["http://x:1"], member="m2")
    assert chosen is not None
    assert (chosen.endpoints, chosen.member) == (("http://x:1",), "m2")
    assert cluster_config_from_env({}) is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"endpoints": ["e1:2379"]}, "endpoints"),
        ({"member": "a/b"}, "member"),
        ({"ttl": 1}, "ttl"),
        ({"margin": 6.0}, "margin"),
        ({"weight": 0}, "weight"),
    ],
)
def test_config_rejects_bad_settings(options: dict[str, object], field: str) -> None:
    """Each bad setting is a ClusterConfigError naming it."""
    settings: dict[str, object] = {"endpoints": ["http://127.0.0.1:2379"], "member": "m", **options}
    with pytest.raises(ClusterConfigError, match=field):
        ClusterConfig(**settings)  # type: ignore[arg-type]


# -- embedded ----------------------------------------------------------------------


async def claimed(
    seen: dict[str, int], task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A child recording its claim's token, then running until stopped."""
    claim = current_claim()
    seen[claim.key] = claim.token
    task_status.started()
    await trio.sleep_forever()


async def test_embedded_pool_runs_every_key_here() -> None:
    """Without a cluster, every key runs in this process, each with its own token."""
    seen: dict[str, int] = {}

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=claimed, args=(seen,))

    async with open_keyed_pool(KEYS, child, hooks=[]) as pool:
        await trio.testing.wait_all_tasks_blocked()
        assert pool.running() == sorted(KEYS)
        snapshot = pool.snapshot()
        assert json.loads(json.dumps(snapshot))["mode"] == "embedded"
        assert snapshot["keys_per_member"] == {"local": len(KEYS)}
    assert sorted(seen) == sorted(KEYS)
    assert len(set(seen.values())) == len(KEYS)
    assert pool.running() == []


async def test_embedded_pool_follows_the_key_set() -> None:
    """Removing a key stops its child; adding one starts it."""

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=claimed, args=({},))

    async with open_keyed_pool(["a", "b"], child, hooks=[]) as pool:
        await trio.testing.wait_all_tasks_blocked()
        assert pool.running() == ["a", "b"]
        pool.set_keys(["b", "c"])
        await trio.testing.wait_all_tasks_blocked()
        assert pool.running() == ["b", "c"]


async def gated(
    entered: list[str],
    gate: trio.Event,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A child whose start waits for ``gate``, recording that it began."""
    entered.append(current_claim().key)
    await gate.wait()
    task_status.started()
    await trio.sleep_forever()


async def test_pool_starts_at_most_max_starting_keys_at_once() -> None:
    """With max_starting=2, two keys' trees start; the others wait until those have started."""
    entered: list[str] = []
    gate = trio.Event()

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=gated, args=(entered, gate))

    async with open_keyed_pool(KEYS[:5], child, hooks=[], max_starting=2) as pool:
        await trio.testing.wait_all_tasks_blocked()
        assert len(entered) == 2
        assert pool.summary()["states"] == {"starting": 5}
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(entered) == sorted(KEYS[:5])
        assert pool.summary()["states"] == {"running": 5}


async def test_a_failed_start_frees_its_place() -> None:
    """A key whose tree cannot start does not keep the others from starting."""
    entered: list[str] = []
    gate = trio.Event()
    gate.set()

    def child(key: str) -> specs.ChildSpec:
        if key == "bad":
            return specs.ChildSpec(id="c", start=_fails_at_start, restart=specs.TEMPORARY)
        return specs.ChildSpec(id="c", start=gated, args=(entered, gate))

    async with open_keyed_pool(["bad", "a", "b"], child, hooks=[], max_starting=1) as pool:
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(entered) == ["a", "b"]
        assert pool.running() == ["a", "b"]


async def _fails_at_start(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    raise OSError("cannot start")


async def test_max_starting_must_be_positive() -> None:
    """max_starting below 1 is a ValueError naming it."""
    with pytest.raises(ValueError, match="max_starting"):
        async with open_keyed_pool(
            ["a"], lambda key: specs.ChildSpec(id="c", start=claimed), max_starting=0
        ):
            pass


def _plain_child(key: str) -> specs.ChildSpec:
    return specs.ChildSpec(id="c", start=claimed, args=({},), shutdown=0.1)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "8"])
def test_pool_spec_rejects_a_bad_max_starting(value: object) -> None:
    """A KeyedPoolSpec's max_starting must be a whole number >= 1: the error names it."""
    with pytest.raises(ClusterConfigError, match="max_starting"):
        KeyedPoolSpec(keys=["a"], factory=_plain_child, max_starting=value)  # type: ignore[arg-type]


def test_max_starting_from_the_argument_else_the_environment() -> None:
    """The argument wins over TRIO_SUPERVISION_MAX_STARTING; neither gives None."""
    env = {"TRIO_SUPERVISION_MAX_STARTING": "3"}
    assert max_starting_from_env(env) == 3
    assert max_starting_from_env(env, max_starting=5) == 5
    assert max_starting_from_env({}) is None
    assert max_starting_from_env({"TRIO_SUPERVISION_MAX_STARTING": " "}) is None


@pytest.mark.parametrize("text", ["0", "many", "2.5"])
def test_a_bad_max_starting_in_the_environment_names_the_variable(text: str) -> None:
    """A bad TRIO_SUPERVISION_MAX_STARTING is a ClusterConfigError naming it and its value."""
    with pytest.raises(ClusterConfigError, match=f"TRIO_SUPERVISION_MAX_STARTING.*{text}"):
        max_starting_from_env({"TRIO_SUPERVISION_MAX_STARTING": text})


async def test_a_pool_specs_max_starting_bounds_its_starts() -> None:
    """The program tree of a KeyedPoolSpec(max_starting=2) starts two keys at a time."""
    entered: list[str] = []
    gate = trio.Event()

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=gated, args=(entered, gate))

    spec = KeyedPoolSpec(keys=KEYS[:5], factory=child, max_starting=2)
    async with supervisor.open_supervisor(spec.tree(None, []), hooks=[]):
        await trio.testing.wait_all_tasks_blocked()
        assert len(entered) == 2
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(entered) == sorted(KEYS[:5])


@pytest.mark.parametrize(
    ("program", "max_starting", "message"),
    [
        (specs.SupervisorSpec(name="t", children=[]), 2, "only a KeyedPoolSpec"),
        (KeyedPoolSpec(keys=["a"], factory=_plain_child), 0, "max_starting must be"),
    ],
)
def test_run_refuses_a_max_starting_it_cannot_use(
    program: specs.SupervisorSpec | KeyedPoolSpec,
    max_starting: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """supervisor.run's max_starting: for a keyed pool only, >= 1; else exit 78 naming it."""
    with pytest.raises(SystemExit) as exit_:
        supervisor.run(program, max_starting=max_starting, hooks=[])
    assert exit_.value.code == supervisor.EXIT_BAD_SPEC
    assert message in capsys.readouterr().err


def test_renewals_fit_four_times_in_the_deadline_window() -> None:
    """A renewal goes out every (TTL - margin) / 4 s: three can be lost before the deadline."""
    config = ClusterConfig(endpoints=["http://127.0.0.1:1"], member="m", ttl=10, margin=2.0)
    assert config.renew_interval == 2.0


async def _hold_a_pool(
    pools: list[KeyedPool], task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=claimed, args=({},))

    async with open_keyed_pool(["a"], child, name="accounts") as pool:
        pools.append(pool)
        task_status.started()
        await trio.sleep_forever()


async def test_pool_events_reach_the_trees_subscribers() -> None:
    """A pool opened in a child: its keys' acquisitions and hand-overs reach the root's stream."""
    pools: list[KeyedPool] = []
    spec = specs.SupervisorSpec(
        name="root", children=[specs.ChildSpec(id="holder", start=_hold_a_pool, args=(pools,))]
    )
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(functools.partial(run_supervisor, spec, hooks=[]))
        await trio.testing.wait_all_tasks_blocked()  # "a" acquired and running
        async with handle.subscribe(events.KeyAcquired, events.KeyReleased) as stream:
            pools[0].set_keys(["b"])
            got = [await stream.receive(), await stream.receive()]
        nursery.cancel_scope.cancel()
    assert {(type(e), e.child) for e in got} == {
        (events.KeyAcquired, "b"),
        (events.KeyReleased, "a"),
    }
    assert all(e.path == "root/holder" and e.supervisor == "accounts" for e in got)


async def test_pool_events_go_to_its_hooks_outside_a_tree() -> None:
    """Outside any tree, the pool's hooks get its events: each key acquired once, with its token."""
    seen: list[events.Event] = []

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=claimed, args=({},))

    async with open_keyed_pool(["a", "b"], child, hooks=[seen.append]) as pool:
        await trio.testing.wait_all_tasks_blocked()
        owned = pool.owned()
    acquired = [e for e in seen if isinstance(e, events.KeyAcquired)]
    assert sorted((e.child, e.token, e.member) for e in acquired) == sorted(
        (key, token, "local") for key, token in owned.items()
    )
    assert sorted(e.child for e in seen if isinstance(e, events.KeyReleased)) == ["a", "b"]


def test_current_claim_outside_a_pool() -> None:
    """current_claim() outside a pool's child is a LookupError."""
    with pytest.raises(LookupError, match="outside"):
        current_claim()


# -- a real etcd -------------------------------------------------------------------


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    """A fresh etcd on free loopback ports, killed and removed after the test."""
    server = Etcd()
    try:
        server.start()
        yield server
    finally:
        server.close()


async def test_create_if_absent_succeeds_once(etcd: Etcd) -> None:
    """Two creates of one key under a lease: the first gets a revision, the second None."""
    async with EtcdClient([etcd.url]) as client:
        lease, ttl = await client.grant(5)
        assert ttl == 5
        first = await client.create("/t/k", b"m1", lease)
        assert first is not None
        assert await client.create("/t/k", b"m2", lease) is None
        assert not await client.delete_if("/t/k", first + 1)
        assert await client.delete_if("/t/k", first)


async def test_create_many_creates_only_the_absent_keys(etcd: Etcd) -> None:
    """A batch create takes the absent keys (one revision for all) and leaves a present one."""
    async with EtcdClient([etcd.url]) as client:
        lease, _ = await client.grant(5)
        held = await client.create("/b/2", b"other", lease)
        created = await client.create_many(["/b/1", "/b/2", "/b/3"], b"m", lease)
        assert sorted(created) == ["/b/1", "/b/3"]
        assert len(set(created.values())) == 1
        assert held is not None
        assert created["/b/1"] > held
        _, kvs = await client.range_prefix("/b/")
        assert {kv.key: kv.value for kv in kvs} == {"/b/1": b"m", "/b/2": b"other", "/b/3": b"m"}
        with pytest.raises(ValueError, match="at most"):
            await client.create_many([f"/b/{n}" for n in range(65)], b"m", lease)


async def test_watch_sees_every_change_after_a_read(etcd: Etcd) -> None:
    """A watch from a range's revision + 1 sees the later put and delete, in order."""
    async with EtcdClient([etcd.url]) as client:
        lease, _ = await client.grant(5)
        revision, kvs = await client.range_prefix("/w/")
        assert kvs == []
        created = await client.create("/w/a", b"x", lease)
        await client.revoke(lease)
        seen = []
        with trio.fail_after(GUARD), trio.CancelScope() as scope:
            async with client.watch_prefix("/w/", revision + 1) as batches:
                async for events in batches:
                    seen += [(e.kind, e.kv.key) for e in events]
                    if len(seen) == 2:
                        scope.cancel()  # unwinds httpx's nested generators, unlike a break
        assert seen == [("put", "/w/a"), ("delete", "/w/a")]
        assert created is not None
        assert await client.keepalive(lease) == 0


async def test_unreachable_etcd_is_a_typed_error() -> None:
    """No etcd on the port: EtcdUnavailable names the endpoint, within the timeout."""
    url = f"http://127.0.0.1:{free_port()}"
    async with EtcdClient([url], timeout=1.0) as client:
        with pytest.raises(EtcdUnavailable, match=r"127\.0\.0\.1"):
            await client.grant(5)


# -- member processes --------------------------------------------------------------


@pytest.fixture
async def sessions() -> AsyncIterator[SessionServer]:
    """The stand-in for the service: counts concurrent sessions per key."""
    server = SessionServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def placed(members: list[str]) -> dict[str, str]:
    """Where rendezvous hashing puts every key over ``members``."""
    return rendezvous_assignment(KEYS, members)


async def settle(server: SessionServer, members: list[str]) -> None:
    """Wait until every key runs once, where placement over ``members`` puts it."""
    with trio.fail_after(GUARD):
        await server.wait_until(lambda: server.owners() == placed(members))


def ended_before_the_next(server: SessionServer, key: str, member: str) -> bool:
    """Whether ``member``'s last session of ``key`` ended before the next owner's began."""
    old = [s for s in server.sessions if s.key == key and s.member == member][-1]
    later = [s for s in server.sessions if s.key == key and s.start > old.start]
    return old.end is not None and bool(later) and all(old.end <= s.start for s in later)


async def start_settled(
    nursery: trio.Nursery, url: str, server: SessionServer, names: str
) -> dict[str, trio.Process]:
    """Start one member per letter of ``names`` on etcd at ``url``; wait until placed."""
    members = {m: await start_member(nursery, m, url, server.port, len(KEYS), TTL) for m in names}
    await settle(server, list(names))
    return members


def assert_never_two(server: SessionServer) -> None:
    """No key ever had two sessions at once, and fencing tokens only grew."""
    assert server.max_concurrent == 1
    assert server.fencing_violations == []


async def test_killed_member_keys_move_to_the_others(etcd: Etcd, sessions: SessionServer) -> None:
    """kill -9 of a member: its keys run on the others after its lease ends, never twice."""
    async with trio.open_nursery() as nursery:
        members = await start_settled(nursery, etcd.url, sessions, "abc")
        members["a"].kill()
        await settle(sessions, ["b", "c"])
        assert_never_two(sessions)
        nursery.cancel_scope.cancel()


async def test_sigterm_hands_keys_over(etcd: Etcd, sessions: SessionServer) -> None:
    """SIGTERM: the member stops each child and releases its key before the next owner starts."""
    async with trio.open_nursery() as nursery:
        members = await start_settled(nursery, etcd.url, sessions, "abc")
        handed = {k for k, m in placed(["a", "b", "c"]).items() if m == "a"}
        members["a"].send_signal(signal.SIGTERM)
        await settle(sessions, ["b", "c"])
        with trio.fail_after(GUARD):
            assert await members["a"].wait() == 0
        assert all(ended_before_the_next(sessions, key, "a") for key in handed)
        assert_never_two(sessions)
        nursery.cancel_scope.cancel()


async def test_join_moves_only_keys_to_the_new_member(etcd: Etcd, sessions: SessionServer) -> None:
    """A 4th member joins: only the keys placed on it move; the others keep their session."""
    async with trio.open_nursery() as nursery:
        await start_settled(nursery, etcd.url, sessions, "abc")
        before = {k: len([s for s in sessions.sessions if s.key == k]) for k in KEYS}
        await start_member(nursery, "d", etcd.url, sessions.port, len(KEYS), TTL)
        await settle(sessions, ["a", "b", "c", "d"])
        moved = {k for k in KEYS if len([s for s in sessions.sessions if s.key == k]) > before[k]}
        assert moved == {k for k, m in placed(["a", "b", "c", "d"]).items() if m == "d"}
        assert_never_two(sessions)
        nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class Recorder:
    """A hook keeping every event, waking waiters on each."""

    seen: list[events.Event] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    def __call__(self, event: events.Event) -> None:
        self.seen.append(event)
        self.changed.set()
        self.changed = trio.Event()

    def count(self, kind: type[events.Event]) -> int:
        return sum(isinstance(e, kind) for e in self.seen)

    async def wait_for(self, kind: type[events.Event], count: int) -> None:
        while self.count(kind) < count:
            await self.changed.wait()


async def test_cut_off_member_reports_its_keys_lost_at_its_deadline(etcd: Etcd) -> None:
    """Black-holed from etcd, a member reports each running key lost ("deadline"), then stops it."""
    record = Recorder()

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=claimed, args=({},), shutdown=0.1)

    keys = KEYS[:3]
    async with open_tcp_relay(etcd.url) as relay:
        config = ClusterConfig(endpoints=[relay.url], member="m", ttl=2, prefix="/lost/")
        with trio.fail_after(GUARD):
            async with open_keyed_pool(keys, child, cluster=config, hooks=[record]):
                await record.wait_for(events.ChildStarted, len(keys))
                relay.freeze()
                await record.wait_for(events.ChildTerminated, len(keys))
                relay.thaw()
    joined = [e.child for e in record.seen if isinstance(e, events.MemberJoined)]
    lost = [e for e in record.seen if isinstance(e, events.KeyLost)]
    assert joined[0] == "m"
    assert sorted(e.child for e in lost) == sorted(keys)
    assert {e.cause for e in lost} == {"deadline"}
    first_stop = next(i for i, e in enumerate(record.seen) if isinstance(e, events.ChildTerminated))
    assert all(record.seen.index(e) < first_stop for e in lost)


async def test_a_handoff_stops_keys_only_as_fast_as_the_new_owner_starts_them(
    etcd: Etcd,
) -> None:
    """A joining member that cannot start yet gets one key; the old owner keeps the rest
    running but for its window (max_starting released, not yet owned elsewhere)."""
    candidates = [f"key-{n}" for n in range(40)]
    moving = [k for k in candidates if rendezvous_owner(k, ["a", "b"]) == "b"][:5]
    keys = moving + [k for k in candidates if k not in moving][:3]
    old, new = Recorder(), Recorder()
    entered: list[str] = []
    gate = trio.Event()

    def a_child(key: str) -> specs.ChildSpec:
        return _plain_child(key)

    def b_child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="c", start=gated, args=(entered, gate), shutdown=0.1)

    def config(member: str) -> ClusterConfig:
        return ClusterConfig(endpoints=[etcd.url], member=member, ttl=10, prefix="/pace/")

    with trio.fail_after(GUARD):
        async with open_keyed_pool(
            keys, a_child, cluster=config("a"), hooks=[old], max_starting=2
        ) as a:
            await old.wait_for(events.ChildStarted, len(keys))
            async with open_keyed_pool(
                keys, b_child, cluster=config("b"), hooks=[new], max_starting=1
            ):
                # b takes one key (it can start one), a releases its window of 2 more
                await old.wait_for(events.KeyReleased, 3)
                assert len(entered) <= 1
                still = [k for k in moving if k in a.running()]
                assert len(still) == len(moving) - 3
                gate.set()
                await new.wait_for(events.ChildStarted, len(moving))
                assert a.running() == sorted(set(keys) - set(moving))


async def _readyz(app: HealthApp) -> tuple[int, dict[str, object]]:
    status, _, body = await app.respond({"type": "http", "headers": [], "path": "/readyz"})
    return status, json.loads(body)


async def test_readyz_names_a_member_without_proof_of_ownership(etcd: Etcd) -> None:
    """/readyz is 503 naming the pool while the member is unregistered or past its deadline."""
    record = Recorder()
    root = specs.SupervisorSpec(name="root", children=[])
    keys = KEYS[:2]
    async with open_tcp_relay(etcd.url) as relay:
        config = ClusterConfig(endpoints=[relay.url], member="m", ttl=2, prefix="/ready/")
        with registering_pools() as pools, trio.fail_after(GUARD):
            async with (
                supervisor.open_supervisor(root, hooks=[]) as sup,
                open_keyed_pool(keys, _plain_child, cluster=config, hooks=[record], name="acc"),
            ):
                app = HealthApp(sup, Metrics(sup, pools=pools), pools=pools)
                assert await _readyz(app) == (
                    503,
                    {
                        "ready": False,
                        "not_running": {"cluster acc": "not registered with etcd yet"},
                    },
                )
                await record.wait_for(events.ChildStarted, len(keys))
                assert await _readyz(app) == (200, {"ready": True, "not_running": {}})
                relay.freeze()
                await record.wait_for(events.ChildTerminated, len(keys))
                status, body = await _readyz(app)
                relay.thaw()
    assert (status, body["ready"]) == (503, False)
    assert body["not_running"] == {
        "cluster acc": "no lease renewal in time: its children are stopped"
    }


async def test_member_cut_off_from_etcd_stops_before_others_take_over(
    etcd: Etcd, sessions: SessionServer
) -> None:
    """A member behind a black-holed link stops its children; the others take them after."""
    async with open_tcp_relay(etcd.url) as relay, trio.open_nursery() as nursery:
        await start_member(nursery, "a", relay.url, sessions.port, len(KEYS), TTL)
        for m in "bc":
            await start_member(nursery, m, etcd.url, sessions.port, len(KEYS), TTL)
        await settle(sessions, ["a", "b", "c"])
        cut = {k for k, m in placed(["a", "b", "c"]).items() if m == "a"}
        relay.freeze()
        await settle(sessions, ["b", "c"])
        assert all(ended_before_the_next(sessions, key, "a") for key in cut)
        relay.thaw()
        await settle(sessions, ["a", "b", "c"])  # it comes back under a new lease
        assert_never_two(sessions)
        nursery.cancel_scope.cancel()


async def test_etcd_restart_stops_then_restores_every_key(
    etcd: Etcd, sessions: SessionServer
) -> None:
    """etcd down: members stop every child (no proof of ownership); back: every key runs once."""
    async with trio.open_nursery() as nursery:
        await start_settled(nursery, etcd.url, sessions, "abc")
        etcd.kill()
        with trio.fail_after(GUARD):
            await sessions.wait_until(lambda: not any(sessions.live.values()))
        await trio.to_thread.run_sync(etcd.start)
        await settle(sessions, ["a", "b", "c"])
        assert_never_two(sessions)
        nursery.cancel_scope.cancel()


async def test_cli_runs_a_pool_member_on_etcd(etcd: Etcd) -> None:
    """`run module:pool --etcd URL --member ID` joins the cluster; /metrics shows its keys."""
    args = ("tests.cli_targets:pool", "--etcd", etcd.url, "--member", "m1")
    async with serving_cli(*args) as base, httpx.AsyncClient(base_url=base) as client:
        owned = 'supervisor_cluster_keys{member="m1",pool="accounts"} 3.0'
        with trio.fail_after(GUARD):  # a hang guard
            # another process: nothing to wait on but its answers
            while owned not in (text := (await client.get("/metrics")).text):  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert 'supervisor_cluster_member_info{member="m1",mode="etcd",pool="accounts"} 1.0' in text
        assert 'supervisor_cluster_safe{pool="accounts"} 1.0' in text
        [pool] = (await client.get("/tree")).json()["cluster"]
        assert (pool["members"], pool["handoffs"]) == ({"m1": 1.0}, [])
