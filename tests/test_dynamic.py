"""Tests for dynamic supervisors (OTP's simple_one_for_one)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import specs
import supervisor
from specs import ChildSpec, DynamicSupervisorSpec
from supervisor.testing import Puppets

from .helpers import Recorder


def pool(puppets: Puppets, **kwargs: object) -> DynamicSupervisorSpec:
    """A dynamic supervisor of puppet workers (each named by its extra argument)."""
    return DynamicSupervisorSpec(template=ChildSpec(id="w", start=puppets.worker), **kwargs)  # type: ignore[arg-type]


async def test_start_child_appends_extra_args_and_returns_ids(autojump_clock: MockClock) -> None:
    """start_child(*extra) starts the template with its args plus extra; ids are unique."""
    puppets = Puppets()
    async with supervisor.open_supervisor(pool(puppets), hooks=[]) as sup:
        assert isinstance(sup, supervisor.DynamicSupervisorHandle)
        ids = [await sup.start_child(name) for name in ("alice", "bob")]
        assert ids == ["w-1", "w-2"]
        assert puppets.is_running("alice")
        assert puppets.is_running("bob")


async def test_crashed_child_restarts_alone_with_its_args(autojump_clock: MockClock) -> None:
    """A crashed dynamic child is restarted with its own arguments; others are untouched."""
    puppets = Puppets()
    async with supervisor.open_supervisor(pool(puppets), hooks=[]) as sup:
        for name in ("alice", "bob"):
            await sup.start_child(name)
        puppets.exit("alice")
        await trio.testing.wait_all_tasks_blocked()
        assert puppets.starts == {"alice": 2, "bob": 1}
        assert [c.incarnation for c in sup.which_children()] == [2, 1]


async def test_intensity_counts_across_dynamic_children(autojump_clock: MockClock) -> None:
    """Crashes of different dynamic children share one intensity window."""
    puppets = Puppets()
    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(pool(puppets, intensity=1), hooks=[]) as sup:
            for name in ("a", "b"):
                await sup.start_child(name)
            puppets.exit("a")
            await trio.testing.wait_all_tasks_blocked()
            puppets.exit("b")
            await trio.sleep_forever()
    assert not puppets.running


async def test_max_children(autojump_clock: MockClock) -> None:
    """start_child beyond max_children raises MaxChildrenReached; a slot frees on terminate."""
    puppets = Puppets()
    async with supervisor.open_supervisor(pool(puppets, max_children=2), hooks=[]) as sup:
        first = await sup.start_child("a")
        await sup.start_child("b")
        with pytest.raises(supervisor.MaxChildrenReached):
            await sup.start_child("c")
        await sup.terminate_child(first)
        await sup.start_child("c")
        assert sorted(puppets.running) == ["b", "c"]


async def test_terminate_child_forgets_it(autojump_clock: MockClock) -> None:
    """terminate_child stops a dynamic child and removes it; an unknown id is ChildNotFound."""
    puppets = Puppets()
    async with supervisor.open_supervisor(pool(puppets), hooks=[]) as sup:
        child = await sup.start_child("a")
        await sup.terminate_child(child)
        assert sup.which_children() == []
        with pytest.raises(supervisor.ChildNotFound):
            await sup.terminate_child(child)


async def test_failed_start_child_is_not_kept(autojump_clock: MockClock) -> None:
    """A dynamic child failing to start raises FailedToStartChild and is not listed."""
    puppets = Puppets()
    puppets.fail_next("a")
    async with supervisor.open_supervisor(pool(puppets), hooks=[]) as sup:
        with pytest.raises(supervisor.FailedToStartChild):
            await sup.start_child("a")
        assert sup.which_children() == []


async def test_shutdown_stops_all_children_at_once(autojump_clock: MockClock) -> None:
    """All dynamic children get their stop together and share one grace deadline."""
    puppets = Puppets(cleanup=1.0)
    recorder = Recorder()
    spec = DynamicSupervisorSpec(template=ChildSpec(id="w", start=puppets.worker, shutdown=2))
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        for name in ("a", "b", "c"):
            await sup.start_child(name)
        start = trio.current_time()
    assert trio.current_time() == start + 1.0
    assert len(recorder.steps(supervisor.events.ChildTerminated)) == 3


async def test_transient_dynamic_child_that_ends_normally_is_forgotten(
    autojump_clock: MockClock,
) -> None:
    """A transient dynamic child's normal exit removes it, as OTP's simple_one_for_one does."""
    puppets = Puppets()
    spec = DynamicSupervisorSpec(
        template=ChildSpec(id="w", start=puppets.worker, restart=specs.TRANSIENT)
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await sup.start_child("a")
        puppets.exit("a", "normal")
        await trio.testing.wait_all_tasks_blocked()
        assert sup.which_children() == []


async def test_restart_of_one_child_does_not_scan_the_others(autojump_clock: MockClock) -> None:
    """With 2,000 children, a restart touches only the failed child (no O(N) planning)."""
    puppets = Puppets()
    async with supervisor.open_supervisor(pool(puppets, intensity=10), hooks=[]) as sup:
        for n in range(2000):
            await sup.start_child(f"p{n}")
        puppets.exit("p1234")
        await trio.testing.wait_all_tasks_blocked()
        counts = sup.count_children()
        assert (counts.specs, counts.active) == (2000, 2000)
        assert puppets.starts["p1234"] == 2


async def test_dynamic_subtree_in_a_static_tree(autojump_clock: MockClock) -> None:
    """A dynamic supervisor nested in a static tree hands its handle to the parent's child list."""
    puppets = Puppets()
    spec = specs.SupervisorSpec(children=[ChildSpec(id="pool", start=pool(puppets))])
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        handle = sup.which_children()[0].value
        assert isinstance(handle, supervisor.DynamicSupervisorHandle)
        await handle.start_child("x")
        assert sup.snapshot().children[0].supervisor is not None
        assert puppets.is_running("x")
    assert not puppets.running


async def _hostage(release: trio.Event) -> None:
    """A plain child that catches its cancellation and runs on until ``release``."""
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await release.wait()


async def test_unresponsive_dynamic_child_is_kept_until_it_ends(autojump_clock: MockClock) -> None:
    """terminate_child of a dynamic child that ignores its stop lists it until its task ends."""
    release = trio.Event()
    spec = DynamicSupervisorSpec(template=ChildSpec(id="w", start=_hostage, shutdown=1))
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        try:
            child_id = await sup.start_child(release)
            await sup.terminate_child(child_id)
            assert [c.state for c in sup.which_children()] == [supervisor.ChildState.UNRESPONSIVE]
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert sup.which_children() == []
        finally:
            release.set()


async def test_a_dynamic_child_that_stays_down_is_kept_visible(autojump_clock: MockClock) -> None:
    """Under a STAY_DOWN kind a dynamic child is not forgotten: it stays listed, stopped."""
    puppets = Puppets()
    spec = DynamicSupervisorSpec(
        template=ChildSpec(id="w", start=puppets.worker),
        failure_policy=specs.FailurePolicy(
            default=specs.KindRule(decision=specs.Decision.STAY_DOWN)
        ),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        child_id = await sup.start_child("a")
        puppets.exit("a")
        await trio.testing.wait_all_tasks_blocked()
        (info,) = sup.which_children()
        assert (info.id, info.state) == (child_id, supervisor.ChildState.STOPPED)
        await sup.terminate_child(child_id)
        assert sup.which_children() == []
