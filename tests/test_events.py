"""Tests for ``supervisor.events``: the event records, their paths, and the event stream.

Trees of puppet workers on virtual time (``autojump_clock``); the account pool's
test runs real Pyrogram clients against the loopback MTProto server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyrogram
import pytest
import trio
import trio.testing
from trio.testing import MockClock

import supervisor
import workers
from specs import ChildSpec, DynamicSupervisorSpec, SupervisorSpec
from supervisor import events
from supervisor._health import Metrics
from supervisor.testing import Puppets
from workers.testing import MTProtoServer, RpcFailure

from .helpers import Recorder

raw: Any = pyrogram.raw


def tree(puppets: Puppets, *ids: str, name: str | None = "root", **kwargs: Any) -> SupervisorSpec:
    """A one_for_one tree of puppet workers, each named by its id."""
    children = [ChildSpec(id=i, start=puppets.worker, args=(i,)) for i in ids]
    return SupervisorSpec(name=name, children=children, intensity=100, **kwargs)


async def crash(puppets: Puppets, name: str) -> None:
    """Crash a puppet and let its supervisor react."""
    assert puppets.exit(name)
    await trio.testing.wait_all_tasks_blocked()


def received(channel: events.EventReceiveChannel) -> list[events.StreamEvent]:
    """Everything a subscriber's channel holds right now."""
    items = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def steps(items: list[events.StreamEvent]) -> list[tuple[str, str, str]]:
    """``(EventName, path, child)`` of each event (``EventsDropped`` left out)."""
    return [
        (type(e).__name__, e.path, e.child)
        for e in items
        if not isinstance(e, events.EventsDropped)
    ]


# ------------------------------------------------------------------ subscribing


async def test_a_subscriber_gets_each_event_with_its_path(autojump_clock: MockClock) -> None:
    """A crash reaches the subscriber as ChildExited then ChildRestarted, each with its path."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        channel = sup.subscribe()
        await crash(puppets, "a")
        items = received(channel)
    assert steps(items) == [("ChildExited", "root", "a"), ("ChildRestarted", "root", "a")]
    exited = items[0]
    assert isinstance(exited, events.ChildExited)
    assert isinstance(exited.reason.exception, supervisor.testing.ScriptedCrash)
    assert exited.supervisor == "root"


async def test_every_subscriber_gets_every_event(autojump_clock: MockClock) -> None:
    """Two subscribers, one subscribed later, each get the events from their subscription on."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", "b"), hooks=[]) as sup:
        first = sup.subscribe()
        await crash(puppets, "a")
        second = sup.subscribe()
        await crash(puppets, "b")
        early, late = received(first), received(second)
    assert [child for _, _, child in steps(early)] == ["a", "a", "b", "b"]
    assert steps(late) == steps(early)[2:]


async def test_the_history_holds_the_same_typed_events_watched_or_not(
    autojump_clock: MockClock,
) -> None:
    """Events no hook or subscriber saw are in the history as the same typed records, in order."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", "b"), hooks=[]) as sup:
        await crash(puppets, "a")  # nothing watches
        channel = sup.subscribe()
        await crash(puppets, "b")  # a subscriber watches
        seen = received(channel)
        history = sup.history
        again = sup.history
    assert [(type(e).__name__, e.supervisor, e.path, e.child) for e in history] == [
        ("ChildStarted", "root", "root", "a"),
        ("ChildStarted", "root", "root", "b"),
        ("ChildExited", "root", "root", "a"),
        ("ChildRestarted", "root", "root", "a"),
        ("ChildExited", "root", "root", "b"),
        ("ChildRestarted", "root", "root", "b"),
    ]
    unwatched, watched = history[2], history[4]
    assert isinstance(unwatched, events.ChildExited)
    assert isinstance(watched, events.ChildExited)
    assert (unwatched.incarnation, unwatched.action) == (watched.incarnation, watched.action)
    assert isinstance(unwatched.reason.exception, supervisor.testing.ScriptedCrash)
    restarted = [e for e in history if isinstance(e, events.ChildRestarted)]
    assert [e.incarnation for e in restarted] == [2, 2]
    assert all(a is b for a, b in zip(history, again, strict=True))
    assert all(a is b for a, b in zip(history[4:], seen, strict=True))


async def test_the_stream_ends_after_the_shutdown(autojump_clock: MockClock) -> None:
    """Once the supervisor stops, the stream ends, after the ChildTerminated of its children."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", "b"), hooks=[]) as sup:
        channel = sup.subscribe()
    items = [item async for item in channel]
    assert steps(items) == [("ChildTerminated", "root", "b"), ("ChildTerminated", "root", "a")]


async def test_closing_the_channel_unsubscribes(autojump_clock: MockClock) -> None:
    """A closed channel is forgotten at once: later events are not offered to it."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        async with sup.subscribe() as channel:
            assert len(sup._core.stream.subscriptions) == 1
        assert sup._core.stream.subscriptions == {}
        await crash(puppets, "a")
        with pytest.raises(trio.ClosedResourceError):
            channel.receive_nowait()


async def test_subscribing_to_a_stopped_supervisor_is_refused(autojump_clock: MockClock) -> None:
    """subscribe() on a stopped supervisor raises SupervisorNotRunning, naming it."""
    async with supervisor.open_supervisor(tree(Puppets(), "a"), hooks=[]) as sup:
        pass
    with pytest.raises(supervisor.SupervisorNotRunning, match="root"):
        sup.subscribe()


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"max_buffer": 0}, ValueError, "max_buffer"),
        ({"max_buffer": 2.5}, ValueError, "max_buffer"),
        ({"kinds": (str,)}, TypeError, "str"),
        ({"kinds": ([],)}, TypeError, r"\[\]"),
        ({"under": "/"}, ValueError, "under"),
    ],
)
async def test_subscribe_refuses_bad_arguments(
    autojump_clock: MockClock, arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A bad max_buffer, kind or path is a typed error naming it, and subscribes nothing."""
    async with supervisor.open_supervisor(tree(Puppets(), "a"), hooks=[]) as sup:
        kinds = arguments.pop("kinds", ())
        with pytest.raises(error, match=match):
            sup.subscribe(*kinds, **arguments)
        assert sup._core.stream.subscriptions == {}


async def test_a_subscriber_filters_by_kind(autojump_clock: MockClock) -> None:
    """subscribe(ChildExited) gets only exits."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        channel = sup.subscribe(events.ChildExited)
        await crash(puppets, "a")
        await crash(puppets, "a")
        items = received(channel)
    assert steps(items) == [("ChildExited", "root", "a")] * 2


async def test_a_subscriber_filters_by_path(autojump_clock: MockClock) -> None:
    """under='root/sub' gets the events of that child and of everything below it."""
    puppets = Puppets()
    spec = SupervisorSpec(
        name="root",
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(id="sub", start=tree(puppets, "x", name=None)),
            ChildSpec(id="subway", start=puppets.worker, args=("subway",)),
        ],
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        channel = sup.subscribe(under="root/sub")
        for name in ("a", "x", "subway"):
            await crash(puppets, name)
        items = received(channel)
    assert steps(items) == [("ChildExited", "root/sub", "x"), ("ChildRestarted", "root/sub", "x")]


# -------------------------------------------------------------------- overflow


async def test_a_slow_subscriber_never_holds_the_supervisor_back(
    autojump_clock: MockClock,
) -> None:
    """A subscriber that reads nothing fills its buffer; the supervisor goes on restarting."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        channel = sup.subscribe(max_buffer=2)
        for _ in range(10):
            await crash(puppets, "a")
        assert puppets.starts["a"] == 11
        assert channel.dropped == 18
        assert channel.statistics().current_buffer_used == 2


async def test_overflow_is_one_record_in_place_of_the_dropped_events(
    autojump_clock: MockClock,
) -> None:
    """Dropped events stand in the stream as one EventsDropped: their count and times."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        channel = sup.subscribe(max_buffer=2)
        for _ in range(5):
            await crash(puppets, "a")
            await trio.sleep(1)
        since = list(sup.history)[-10:]  # the 10 events since it subscribed
        first, second = await channel.receive(), await channel.receive()
        record = await channel.receive()
        await crash(puppets, "a")
        after = received(channel)
    assert [first, second] == since[:2]
    assert record == events.EventsDropped(
        count=8, first_time=since[2].time, last_time=since[9].time
    )
    assert since[2].time < since[9].time
    assert steps(after) == [("ChildExited", "root", "a"), ("ChildRestarted", "root", "a")]


async def test_the_overflow_record_comes_even_when_the_stream_ends(
    autojump_clock: MockClock,
) -> None:
    """A full buffer at the supervisor's end still yields its EventsDropped before the end."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        channel = sup.subscribe(max_buffer=1)
        await crash(puppets, "a")
    items = [item async for item in channel]
    assert steps(items) == [("ChildExited", "root", "a")]
    assert isinstance(items[-1], events.EventsDropped)
    assert items[-1].count == 2  # ChildRestarted, and the ChildTerminated of the shutdown


# --------------------------------------------------------------------- subtrees


def nested_tree(puppets: Puppets) -> SupervisorSpec:
    """root -> (sub: one worker x) and (pool: dynamic puppet workers)."""
    return SupervisorSpec(
        name="root",
        intensity=100,
        children=[
            ChildSpec(id="sub", start=tree(puppets, "x", name=None)),
            ChildSpec(
                id="pool",
                start=DynamicSupervisorSpec(
                    template=ChildSpec(id="w", start=puppets.worker), intensity=100
                ),
            ),
        ],
    )


async def test_subtree_and_dynamic_children_reach_the_root_with_their_paths(
    autojump_clock: MockClock,
) -> None:
    """Crashes in a subtree and in a dynamic supervisor reach the root's subscriber and hooks."""
    puppets = Puppets()
    hook = Recorder()
    async with supervisor.open_supervisor(nested_tree(puppets), hooks=[hook]) as sup:
        pool = sup.which_children()[1].value
        channel = sup.subscribe(events.ChildExited)
        await pool.start_child("alice")
        await crash(puppets, "x")
        await crash(puppets, "alice")
        items = received(channel)
    assert steps(items) == [("ChildExited", "root/sub", "x"), ("ChildExited", "root/pool", "w-1")]
    assert [(e.supervisor, e.child) for e in items if isinstance(e, events.ChildExited)] == [
        ("root/sub", "x"),
        ("root/pool", "w-1"),
    ]
    assert [e for e in hook.events if isinstance(e, events.ChildExited)] == items


async def test_subscribing_to_a_subtree_gives_only_its_events(autojump_clock: MockClock) -> None:
    """A subscriber of the dynamic subtree's handle gets its events, not its siblings'."""
    puppets = Puppets()
    async with supervisor.open_supervisor(nested_tree(puppets), hooks=[]) as sup:
        pool = sup.which_children()[1].value
        assert pool.path == "root/pool"
        channel = pool.subscribe()
        await pool.start_child("alice")
        await crash(puppets, "x")
        await crash(puppets, "alice")
        items = received(channel)
    assert steps(items) == [
        ("ChildStarted", "root/pool", "w-1"),
        ("ChildExited", "root/pool", "w-1"),
        ("ChildRestarted", "root/pool", "w-1"),
    ]


def host(inner: SupervisorSpec, **options: Any) -> Callable[..., Awaitable[None]]:
    """A child whose own code opens a supervisor (as account_pool's accounts do)."""

    async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with supervisor.open_supervisor(inner, **options) as handle:
            task_status.started(handle)
            await trio.sleep_forever()

    return run


async def test_a_supervisor_opened_inside_a_child_joins_the_tree(
    autojump_clock: MockClock,
) -> None:
    """Its events reach the root's hooks and subscribers, with the child's place as path."""
    puppets = Puppets()
    hook = Recorder()
    spec = SupervisorSpec(
        name="root", children=[ChildSpec(id="host", start=host(tree(puppets, "x", name=None)))]
    )
    async with supervisor.open_supervisor(spec, hooks=[hook]) as sup:
        inner = sup.which_children()[0].value
        channel = sup.subscribe()
        await crash(puppets, "x")
        items = received(channel)
    assert (inner.name, inner.path) == ("root/host", "root/host")
    assert steps(items) == [("ChildExited", "root/host", "x"), ("ChildRestarted", "root/host", "x")]
    assert ("ChildExited", "x") in hook.steps()


async def test_a_hook_given_to_both_trees_is_called_once(autojump_clock: MockClock) -> None:
    """A nested supervisor given its tree's hook again calls it once per event."""
    puppets = Puppets()
    hook = Recorder()
    inner = tree(puppets, "x", name="inner")
    spec = SupervisorSpec(
        name="root", children=[ChildSpec(id="host", start=host(inner, hooks=[hook]))]
    )
    async with supervisor.open_supervisor(spec, hooks=[hook]):
        await crash(puppets, "x")
    assert hook.steps(events.ChildExited) == [("ChildExited", "x")]
    assert next(e.supervisor for e in hook.events if e.child == "x") == "inner"


async def test_attach_false_keeps_a_tree_of_its_own(autojump_clock: MockClock) -> None:
    """With attach=False a supervisor inside a child reports only to its own hooks."""
    puppets = Puppets()
    outer, own = Recorder(), Recorder()
    inner = tree(puppets, "x", name="inner")
    spec = SupervisorSpec(
        name="root", children=[ChildSpec(id="host", start=host(inner, hooks=[own], attach=False))]
    )
    async with supervisor.open_supervisor(spec, hooks=[outer]) as sup:
        channel = sup.subscribe()
        await crash(puppets, "x")
        assert received(channel) == []
    assert [c for _, c in outer.steps()] == ["host", "host"]  # its start and its stop
    assert ("ChildExited", "x") in own.steps()
    assert {e.path for e in own.events} == {"inner"}


async def test_a_child_subscribes_through_current_supervisor(autojump_clock: MockClock) -> None:
    """Inside a child, current_supervisor(root=True) is the root: it can subscribe there."""
    puppets = Puppets()
    seen: list[events.StreamEvent] = []
    found: list[tuple[str, str]] = []

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        own, root = supervisor.current_supervisor(), supervisor.current_supervisor(root=True)
        found.append((own.path, root.path))
        async with root.subscribe(events.ChildExited) as channel:
            task_status.started()
            async for event in channel:
                seen.append(event)

    inner = SupervisorSpec(children=[ChildSpec(id="watcher", start=watcher)])
    spec = SupervisorSpec(
        name="root",
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(id="sub", start=inner),
        ],
    )
    async with supervisor.open_supervisor(spec, hooks=[]):
        await crash(puppets, "a")
    assert found == [("root/sub", "root")]
    assert steps(seen) == [("ChildExited", "root", "a")]


def test_current_supervisor_outside_a_child_raises() -> None:
    """current_supervisor() outside a supervised child is a RuntimeError."""
    with pytest.raises(RuntimeError, match="current_supervisor"):
        supervisor.current_supervisor()


# --------------------------------------------------------------------- metrics


async def test_the_roots_metrics_count_a_nested_supervisors_restarts(
    autojump_clock: MockClock,
) -> None:
    """A Metrics hook on the root counts the restarts of a supervisor opened inside a child."""
    puppets = Puppets()
    metrics = Metrics()
    inner = tree(puppets, "x", name="inner")
    spec = SupervisorSpec(name="root", children=[ChildSpec(id="host", start=host(inner))])
    async with supervisor.open_supervisor(spec, hooks=[metrics]):
        await crash(puppets, "x")
        await crash(puppets, "x")
    text = metrics.exposition().decode()
    assert (
        'supervisor_restarts_total{child="x",kind="ScriptedCrash",supervisor="inner"} 2.0' in text
    )


async def test_account_pool_restarts_reach_the_roots_subscribers_and_metrics(
    autojump_clock: MockClock,
    mtproto_server: MTProtoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A FloodWait in one account of a real pool reaches the root, with the account's path."""
    monkeypatch.chdir(tmp_path)  # Pyrogram writes unknown_errors.txt to the current directory
    registry = workers.Registry()
    metrics = Metrics()
    pool = workers.account_pool(registry=registry)  # no hooks of its own: the tree's
    spec = SupervisorSpec(name="bridge", children=[ChildSpec(id="accounts", start=pool)])
    ann, bob = mtproto_server.new_account(), mtproto_server.new_account()
    async with supervisor.open_supervisor(spec, hooks=[metrics]) as sup:
        channel = sup.subscribe(events.ChildExited, events.ChildRestarted)
        accounts = sup.which_children()[0].value
        for name, account in (("ann", ann), ("bob", bob)):
            config = workers.PyrogramConfig(
                name=name,
                api_id=12345,
                api_hash="0123456789abcdef0123456789abcdef",
                session_string=account.session_string,
                ping_interval=0.5,
                ping_timeout=1.0,
                connect_timeout=2.0,
                stop_timeout=1.0,
            )
            await accounts.start_child(config)
        mtproto_server.fail_next(bob, "help.GetNearestDc", RpcFailure.flood_wait(2))
        await registry.call("bob", ("invoke", raw.functions.help.GetNearestDc()))
        with trio.fail_after(10):
            exited, restarted = await channel.receive(), await channel.receive()
    assert isinstance(exited, events.ChildExited)
    assert isinstance(exited.reason.exception, workers.FloodWait)
    assert (exited.path, exited.child, exited.supervisor) == (
        "bridge/accounts/account-2",
        "client",
        "accounts/bob",
    )
    assert isinstance(restarted, events.ChildRestarted)
    assert restarted.time - exited.time == pytest.approx(2.0)
    text = metrics.exposition().decode()
    assert (
        'supervisor_restarts_total{child="client",kind="FloodWait",supervisor="accounts/bob"} 1.0'
        in text
    )
    restarts = [line for line in text.splitlines() if line.startswith("supervisor_restarts_total")]
    assert len(restarts) == 1  # bob's; ann never restarted
