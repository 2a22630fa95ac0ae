"""Tests for the supervisor runtime: OTP semantics on a mock clock."""

from __future__ import annotations

import gc
import json
import logging
import math
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

import specs
import supervisor
from specs import ChildSpec, SupervisorSpec
from supervisor import ChildState, events
from supervisor.testing import Puppets

from .helpers import Recorder, crash_after, forever, return_after


def tree(
    puppets: Puppets,
    *ids: str,
    strategy: specs.Strategy = specs.ONE_FOR_ONE,
    restart: dict[str, specs.Restart] | None = None,
    **kwargs: Any,
) -> SupervisorSpec:
    """A supervisor of puppet workers named by ``ids``."""
    restart = restart or {}
    return SupervisorSpec(
        children=[
            ChildSpec(
                id=i,
                start=puppets.worker,
                args=(i,),
                restart=restart.get(i, specs.PERMANENT),
            )
            for i in ids
        ],
        strategy=strategy,
        **kwargs,
    )


async def settle() -> None:
    """Let the supervisor carry out everything pending."""
    await trio.testing.wait_all_tasks_blocked()


# ------------------------------------------------------------------- start


async def test_children_start_in_order_each_after_the_previous_is_ready(
    autojump_clock: MockClock,
) -> None:
    """Each child starts only after the previous one called task_status.started()."""
    log: list[str] = []

    async def slow(name: str, delay: float, task_status: trio.TaskStatus[None]) -> None:
        log.append(f"begin {name}")
        await trio.sleep(delay)
        log.append(f"ready {name}")
        task_status.started()
        await trio.sleep_forever()

    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=slow, args=("a", 2)),
            ChildSpec(id="b", start=slow, args=("b", 1)),
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        assert log == ["begin a", "ready a", "begin b", "ready b"]
        assert [c.state for c in sup.which_children()] == [ChildState.RUNNING] * 2


async def test_start_failure_stops_started_children_in_reverse_and_fails(
    autojump_clock: MockClock,
) -> None:
    """A child failing to start stops the started ones newest first; later ones never start."""
    puppets = Puppets()
    puppets.fail_next("c3")
    recorder = Recorder()
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with supervisor.open_supervisor(
            tree(puppets, "c1", "c2", "c3", "c4"), hooks=[recorder]
        ):
            pytest.fail("the block must not run")  # pragma: no cover
    assert caught.value.child == "c3"
    assert isinstance(caught.value.__cause__, supervisor.testing.ScriptedStartError)
    assert recorder.lifecycle() == [
        ("start", "c1"),
        ("start", "c2"),
        ("start_failed", "c3"),
        ("stop", "c2"),
        ("stop", "c1"),
    ]


async def test_child_returning_before_started_is_a_start_failure(autojump_clock: MockClock) -> None:
    """A handshake child that returns without calling started() fails to start."""

    async def never_ready(task_status: trio.TaskStatus[None]) -> None:
        return

    spec = SupervisorSpec(children=[ChildSpec(id="x", start=never_ready)])
    with pytest.raises(supervisor.FailedToStartChild, match="started"):
        async with supervisor.open_supervisor(spec, hooks=[]):
            pass  # pragma: no cover


async def test_run_supervisor_hands_over_a_handle(autojump_clock: MockClock) -> None:
    """nursery.start(run_supervisor, spec) returns a handle once the tree is up."""
    puppets = Puppets()
    async with trio.open_nursery() as nursery:
        sup = await nursery.start(supervisor.run_supervisor, tree(puppets, "a"))
        assert isinstance(sup, supervisor.SupervisorHandle)
        assert puppets.is_running("a")
        await sup.shutdown()
    assert not puppets.is_running("a")


# ---------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_failed_child(autojump_clock: MockClock) -> None:
    """one_for_one: only the crashed child gets a new incarnation."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", "b", "c"), hooks=[]) as sup:
        puppets.exit("b")
        await settle()
        assert [c.incarnation for c in sup.which_children()] == [1, 2, 1]


async def test_rest_for_one_restarts_the_failed_child_and_later_ones(
    autojump_clock: MockClock,
) -> None:
    """rest_for_one: later children stop newest first, then restart in order."""
    puppets, recorder = Puppets(), Recorder()
    spec = tree(puppets, "a", "b", "c", "d", strategy=specs.REST_FOR_ONE)
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        puppets.exit("b")
        await settle()
        assert recorder.lifecycle()[4:] == [
            ("exit", "b"),
            ("stop", "d"),
            ("stop", "c"),
            ("start", "b"),
            ("start", "c"),
            ("start", "d"),
        ]
        assert [c.incarnation for c in sup.which_children()] == [1, 2, 2, 2]


async def test_one_for_all_restarts_every_child(autojump_clock: MockClock) -> None:
    """one_for_all: every other child stops newest first, then all start in order."""
    puppets, recorder = Puppets(), Recorder()
    spec = tree(puppets, "a", "b", "c", strategy=specs.ONE_FOR_ALL)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        puppets.exit("b")
        await settle()
    assert recorder.lifecycle()[3:9] == [
        ("exit", "b"),
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


async def test_group_restart_does_not_restart_temporary_bystanders(
    autojump_clock: MockClock,
) -> None:
    """A temporary child stopped by a group restart is removed, not restarted."""
    puppets = Puppets()
    spec = tree(puppets, "a", "t", "c", strategy=specs.ONE_FOR_ALL, restart={"t": specs.TEMPORARY})
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await settle()
        assert [c.id for c in sup.which_children()] == ["a", "c"]
        assert not puppets.is_running("t")


async def test_group_restart_starts_children_that_were_stopped(autojump_clock: MockClock) -> None:
    """one_for_all brings back a terminated child and a transient one that ended normally."""
    puppets = Puppets()
    spec = tree(puppets, "a", "b", "c", strategy=specs.ONE_FOR_ALL, restart={"b": specs.TRANSIENT})
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await sup.terminate_child("c")
        puppets.exit("b", "normal")
        await settle()
        assert [c.state for c in sup.which_children()][1:] == [ChildState.STOPPED] * 2
        puppets.exit("a")
        await settle()
        assert [c.state for c in sup.which_children()] == [ChildState.RUNNING] * 3


async def test_temporary_crash_disturbs_no_sibling(autojump_clock: MockClock) -> None:
    """Under one_for_all a temporary child's crash only removes it."""
    puppets = Puppets()
    spec = tree(puppets, "a", "t", strategy=specs.ONE_FOR_ALL, restart={"t": specs.TEMPORARY})
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("t")
        await settle()
        assert [(c.id, c.incarnation) for c in sup.which_children()] == [("a", 1)]


# ------------------------------------------------------------- restart types


@pytest.mark.parametrize(
    ("restart", "reason", "after"),
    [
        (specs.PERMANENT, "normal", "restarted"),
        (specs.PERMANENT, "shutdown", "restarted"),
        (specs.PERMANENT, "abnormal", "restarted"),
        (specs.TRANSIENT, "normal", "stopped"),
        (specs.TRANSIENT, "shutdown", "stopped"),
        (specs.TRANSIENT, "shutdown_r", "stopped"),
        (specs.TRANSIENT, "abnormal", "restarted"),
        (specs.TEMPORARY, "normal", "removed"),
        (specs.TEMPORARY, "abnormal", "removed"),
    ],
)
async def test_restart_types(
    autojump_clock: MockClock, restart: specs.Restart, reason: str, after: str
) -> None:
    """Each restart type handles each exit reason as OTP does."""
    puppets = Puppets()
    async with supervisor.open_supervisor(
        tree(puppets, "x", restart={"x": restart}), hooks=[]
    ) as sup:
        puppets.exit("x", reason)
        await settle()
        children = sup.which_children()
        if after == "removed":
            assert children == []
        elif after == "stopped":
            assert [(c.state, c.incarnation) for c in children] == [(ChildState.STOPPED, 1)]
        else:
            assert [(c.state, c.incarnation) for c in children] == [(ChildState.RUNNING, 2)]


async def test_transient_child_stopped_by_shutdown_can_be_restarted(
    autojump_clock: MockClock,
) -> None:
    """A transient child that raised Shutdown stays listed, and restart_child starts it."""
    puppets = Puppets()
    async with supervisor.open_supervisor(
        tree(puppets, "x", restart={"x": specs.TRANSIENT}), hooks=[]
    ) as sup:
        puppets.exit("x", "shutdown")
        await settle()
        await sup.restart_child("x")
        assert puppets.is_running("x")


# ----------------------------------------------------------------- intensity


async def test_more_than_intensity_restarts_in_period_gives_up(autojump_clock: MockClock) -> None:
    """intensity=2: two restarts are carried out, the third crash gives up."""
    puppets, recorder = Puppets(), Recorder()
    with pytest.raises(supervisor.MaxIntensityReached) as caught:
        async with supervisor.open_supervisor(
            tree(puppets, "a", "b", intensity=2, period=5), hooks=[recorder]
        ):
            for _ in range(3):
                await trio.sleep(1)
                puppets.exit("b")
                await settle()
            await trio.sleep_forever()
    error = caught.value
    assert (error.supervisor, error.child) == ("supervisor", "b")
    assert isinstance(error.reason, supervisor.ExitReason)
    assert recorder.lifecycle()[-3:] == [("gave_up", "b"), ("stop", "a")] or recorder.lifecycle()[
        -2:
    ] == [("gave_up", "b"), ("stop", "a")]
    assert not puppets.running


async def test_restart_exactly_period_ago_counts_toward_intensity(
    autojump_clock: MockClock,
) -> None:
    """Crashes exactly `period` seconds apart with intensity 1: the second gives up."""
    puppets = Puppets()
    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(tree(puppets, "a", intensity=1, period=5), hooks=[]):
            puppets.exit("a")
            await settle()
            await trio.sleep(5)
            puppets.exit("a")
            await trio.sleep_forever()


async def test_restarts_spread_beyond_period_are_survived(autojump_clock: MockClock) -> None:
    """Crashes just over `period` apart never exceed intensity 1."""
    puppets = Puppets()
    async with supervisor.open_supervisor(
        tree(puppets, "a", intensity=1, period=5), hooks=[]
    ) as sup:
        for _ in range(5):
            puppets.exit("a")
            await settle()
            await trio.sleep(5.001)
        assert sup.which_children()[0].incarnation == 6


async def test_intensity_is_counted_across_children(autojump_clock: MockClock) -> None:
    """Restarts of different children share one intensity window."""
    puppets = Puppets()
    with pytest.raises(supervisor.MaxIntensityReached) as caught:
        async with supervisor.open_supervisor(
            tree(puppets, "a", "b", "c", intensity=2, period=5), hooks=[]
        ):
            for name in ("a", "b", "c"):
                puppets.exit(name)
                await settle()
            await trio.sleep_forever()
    assert caught.value.child == "c"


async def test_failed_restart_is_retried_and_each_retry_counts(autojump_clock: MockClock) -> None:
    """A restart whose start fails is retried, each attempt counting toward intensity."""
    puppets, recorder = Puppets(), Recorder()
    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(
            tree(puppets, "a", intensity=3, period=5), hooks=[recorder]
        ):
            puppets.fail_next("a", 10)
            puppets.exit("a")
            await trio.sleep_forever()
    assert recorder.lifecycle()[1:] == [
        ("exit", "a"),
        ("start_failed", "a"),
        ("start_failed", "a"),
        ("start_failed", "a"),
        ("gave_up", "a"),
    ]


async def test_failed_restart_recovers_when_the_start_works_again(
    autojump_clock: MockClock,
) -> None:
    """A retry that succeeds leaves the child running."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", intensity=3), hooks=[]) as sup:
        puppets.fail_next("a", 2)
        puppets.exit("a")
        await settle()
        assert sup.which_children()[0].state is ChildState.RUNNING
        assert puppets.starts["a"] == 2


async def test_start_failure_mid_group_keeps_restarted_children_and_retries(
    autojump_clock: MockClock,
) -> None:
    """rest_for_one: when c fails to start in b's group restart, b stays up and c is retried."""
    puppets, recorder = Puppets(), Recorder()
    spec = tree(puppets, "a", "b", "c", strategy=specs.REST_FOR_ONE, intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        puppets.fail_next("c", 1)
        puppets.exit("b")
        await settle()
        assert recorder.lifecycle()[3:] == [
            ("exit", "b"),
            ("stop", "c"),
            ("start", "b"),
            ("start_failed", "c"),
            ("start", "c"),
        ]
        assert [c.incarnation for c in sup.which_children()] == [1, 2, 3]


async def test_one_for_all_retry_restarts_the_whole_group_again(autojump_clock: MockClock) -> None:
    """one_for_all: a failed start in the group restart stops the restarted ones and starts all."""
    puppets, recorder = Puppets(), Recorder()
    spec = tree(puppets, "a", "b", "c", strategy=specs.ONE_FOR_ALL, intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        puppets.fail_next("b", 1)
        puppets.exit("c")
        await settle()
        assert recorder.lifecycle()[3:] == [
            ("exit", "c"),
            ("stop", "b"),
            ("stop", "a"),
            ("start", "a"),
            ("start_failed", "b"),
            ("stop", "a"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]


async def test_manual_restart_does_not_count(autojump_clock: MockClock) -> None:
    """terminate_child + restart_child many times never exhausts intensity 0."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a", intensity=0), hooks=[]) as sup:
        for _ in range(5):
            await sup.terminate_child("a")
            await sup.restart_child("a")
        assert sup.running


# ------------------------------------------------------------------ shutdown


async def test_shutdown_stops_children_in_reverse_start_order(autojump_clock: MockClock) -> None:
    """Leaving the block stops the children newest first."""
    puppets, recorder = Puppets(), Recorder()
    async with supervisor.open_supervisor(tree(puppets, "a", "b", "c"), hooks=[recorder]):
        pass
    assert recorder.lifecycle()[3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]


async def test_cleanup_within_grace_completes(autojump_clock: MockClock) -> None:
    """A child's cleanup inside shutdown_grace() runs to completion within its grace."""
    done: list[float] = []

    async def tidy(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisor.shutdown_grace():
                await trio.sleep(2)
                done.append(trio.current_time())

    recorder = Recorder()
    spec = SupervisorSpec(children=[ChildSpec(id="t", start=tidy, shutdown=3)])
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        start = trio.current_time()
    assert done == [start + 2]
    assert recorder.steps(events.ShutdownTimedOut) == []


async def test_cleanup_overrunning_grace_is_cut_short(autojump_clock: MockClock) -> None:
    """A cleanup longer than the grace is cancelled at the deadline and reported."""
    finished: list[bool] = []

    async def slow(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisor.shutdown_grace():
                await trio.sleep(60)
                finished.append(True)

    recorder = Recorder()
    spec = SupervisorSpec(children=[ChildSpec(id="s", start=slow, shutdown=2)])
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        start = trio.current_time()
    assert finished == []
    assert trio.current_time() == start + 2
    assert recorder.steps(events.ShutdownTimedOut) == [("ShutdownTimedOut", "s")]


async def test_brutal_kill_gives_no_grace(autojump_clock: MockClock) -> None:
    """BRUTAL_KILL: the cleanup is cancelled at once."""
    reached: list[str] = []

    async def child(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisor.shutdown_grace():
                reached.append("cleanup")
                await trio.sleep(1)
                reached.append("finished")

    spec = SupervisorSpec(children=[ChildSpec(id="k", start=child, shutdown=specs.BRUTAL_KILL)])
    async with supervisor.open_supervisor(spec, hooks=[]):
        start = trio.current_time()
    assert reached == ["cleanup"]
    assert trio.current_time() == start


async def test_outer_cancellation_still_shuts_down_in_order(autojump_clock: MockClock) -> None:
    """Cancelling the code around a tree stops its children newest first, then propagates."""
    puppets, recorder = Puppets(), Recorder()
    with trio.move_on_after(10) as scope:
        async with supervisor.open_supervisor(tree(puppets, "a", "b"), hooks=[recorder]):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert recorder.lifecycle()[2:] == [("stop", "b"), ("stop", "a")]
    assert not puppets.running


async def test_exception_in_block_propagates_unwrapped_after_shutdown(
    autojump_clock: MockClock,
) -> None:
    """An error raised in the block comes out as itself, after an ordered shutdown."""
    puppets = Puppets()
    with pytest.raises(KeyError, match="mine"):
        async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]):
            raise KeyError("mine")
    assert not puppets.running


async def test_crash_never_cancels_siblings(autojump_clock: MockClock) -> None:
    """A child's exception does not cancel its siblings' tasks."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="steady", start=puppets.worker, args=("steady",)),
            ChildSpec(id="crasher", start=crash_after, args=(1,), restart=specs.TEMPORARY),
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(2)
        assert puppets.starts == {"steady": 1}
        assert [c.id for c in sup.which_children()] == ["steady"]


# -------------------------------------------------------------------- nesting


async def test_nested_supervisor_gives_up_to_its_parent(autojump_clock: MockClock) -> None:
    """A subtree that reaches its intensity exits; its permanent spec is restarted by the parent."""
    puppets, recorder = Puppets(), Recorder()
    inner = tree(puppets, "w", intensity=0)
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="peer", start=puppets.worker, args=("peer",)),
            ChildSpec(id="inner", start=inner),
        ]
    )
    async with supervisor.open_supervisor(spec, name="root", hooks=[recorder]) as sup:
        puppets.exit("w")
        await settle()
        assert [(c.id, c.incarnation) for c in sup.which_children()] == [("peer", 1), ("inner", 2)]
        assert ("GaveUp", "w") in recorder.steps()
        exits = [e for e in recorder.events if isinstance(e, events.ChildExited)]
        assert [(e.supervisor, e.child) for e in exits] == [("root/inner", "w"), ("root", "inner")]
        assert isinstance(exits[1].reason.exception, supervisor.MaxIntensityReached)


async def test_transient_subtree_that_gave_up_stays_down(autojump_clock: MockClock) -> None:
    """A transient subtree giving up is a shutdown exit: it is not restarted (as in OTP)."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="inner", start=tree(puppets, "w", intensity=0), restart=specs.TRANSIENT)
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("w")
        await settle()
        assert [(c.id, c.state) for c in sup.which_children()] == [("inner", ChildState.STOPPED)]


async def test_escalation_reaches_the_root(autojump_clock: MockClock) -> None:
    """A subtree that keeps giving up makes its parent give up too."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[ChildSpec(id="inner", start=tree(puppets, "w", intensity=0))], intensity=0
    )
    with pytest.raises(supervisor.MaxIntensityReached) as caught:
        async with supervisor.open_supervisor(spec, name="root", hooks=[]):
            puppets.exit("w")
            await trio.sleep_forever()
    assert (caught.value.supervisor, caught.value.child) == ("root", "inner")


async def test_nested_shutdown_is_depth_first_reverse_order(autojump_clock: MockClock) -> None:
    """Shutting a tree down stops a subtree's children before the subtree's older siblings."""
    puppets, recorder = Puppets(), Recorder()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(id="sub", start=tree(puppets, "x", "y")),
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        pass
    assert [s for s in recorder.lifecycle() if s[0] == "stop"] == [
        ("stop", "y"),
        ("stop", "x"),
        ("stop", "sub"),
        ("stop", "a"),
    ]


# ----------------------------------------------------------------------- API


async def test_start_child_appends_and_returns_the_started_value(autojump_clock: MockClock) -> None:
    """start_child adds a child at the end and returns what it passed to started()."""

    async def answer(task_status: trio.TaskStatus[int]) -> None:
        task_status.started(42)
        await trio.sleep_forever()

    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        assert await sup.start_child(ChildSpec(id="b", start=answer)) == 42
        assert [c.id for c in sup.which_children()] == ["a", "b"]


async def test_start_child_with_a_known_id(autojump_clock: MockClock) -> None:
    """start_child refuses a running id (already started) and a stopped one (already present)."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        with pytest.raises(supervisor.ChildAlreadyStarted):
            await sup.start_child(ChildSpec(id="a", start=forever))
        await sup.terminate_child("a")
        with pytest.raises(supervisor.ChildAlreadyPresent):
            await sup.start_child(ChildSpec(id="a", start=forever))


async def test_start_child_failure_is_raised_and_not_kept(autojump_clock: MockClock) -> None:
    """A child failing in start_child raises FailedToStartChild and is not listed."""
    puppets = Puppets()
    puppets.fail_next("b")
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        with pytest.raises(supervisor.FailedToStartChild):
            await sup.start_child(ChildSpec(id="b", start=puppets.worker, args=("b",)))
        assert [c.id for c in sup.which_children()] == ["a"]


async def test_terminate_restart_delete(autojump_clock: MockClock) -> None:
    """terminate_child stops, restart_child restarts, delete_child forgets, with OTP's errors."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        with pytest.raises(supervisor.ChildRunning):
            await sup.restart_child("a")
        with pytest.raises(supervisor.ChildRunning):
            await sup.delete_child("a")
        await sup.terminate_child("a")
        await sup.terminate_child("a")  # repeatable, as in OTP
        assert not puppets.is_running("a")
        await sup.restart_child("a")
        assert puppets.is_running("a")
        await sup.terminate_child("a")
        await sup.delete_child("a")
        assert sup.which_children() == []
        for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
            with pytest.raises(supervisor.ChildNotFound):
                await call("a")


async def test_a_child_failing_as_it_is_stopped_ends_alone(autojump_clock: MockClock) -> None:
    """A child whose nursery fails during its stop (Cancelled + error in one group) ends alone."""

    async def resets_on_close() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise ConnectionResetError("reset by peer as it closed") from None

    async def server() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(resets_on_close)
            await trio.sleep_forever()

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="server", start=server), ChildSpec(id="sibling", start=forever)]
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        await sup.terminate_child("server")
        states = {info.id: info.state for info in sup.which_children()}
        assert states == {"server": ChildState.STOPPED, "sibling": ChildState.RUNNING}
        assert sup.running
    (stopped,) = [
        e for e in recorder.events if isinstance(e, events.ChildTerminated) and e.child == "server"
    ]
    assert isinstance(stopped.reason.exception, ExceptionGroup)
    assert stopped.reason.exception.subgroup(ConnectionResetError) is not None


async def test_terminate_temporary_child_forgets_it(autojump_clock: MockClock) -> None:
    """terminate_child of a temporary child removes its spec."""
    puppets = Puppets()
    async with supervisor.open_supervisor(
        tree(puppets, "t", restart={"t": specs.TEMPORARY}), hooks=[]
    ) as sup:
        await sup.terminate_child("t")
        assert sup.which_children() == []


async def test_api_on_a_child_whose_restart_is_pending(autojump_clock: MockClock) -> None:
    """While a restart is pending: restart/delete say restarting; terminate cancels it."""
    puppets = Puppets()
    spec = tree(puppets, "a", backoff=specs.Backoff(wait_initial=10, wait_jitter=0), intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await settle()
        assert sup.which_children()[0].state is ChildState.RESTARTING
        with pytest.raises(supervisor.ChildRestarting):
            await sup.restart_child("a")
        with pytest.raises(supervisor.ChildRestarting):
            await sup.delete_child("a")
        await sup.terminate_child("a")
        await trio.sleep(20)
        assert sup.which_children()[0].state is ChildState.STOPPED
        assert puppets.starts["a"] == 1


async def test_count_children(autojump_clock: MockClock) -> None:
    """count_children counts specs, running children, supervisors and workers."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(id="b", start=puppets.worker, args=("b",)),
            ChildSpec(id="s", start=tree(puppets, "x")),
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await sup.terminate_child("b")
        assert sup.count_children() == supervisor.ChildCounts(
            specs=3, active=2, supervisors=1, workers=2
        )


async def test_handle_after_stop_raises(autojump_clock: MockClock) -> None:
    """Using a handle after its supervisor stopped raises SupervisorNotRunning."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        pass
    with pytest.raises(supervisor.SupervisorNotRunning):
        await sup.restart_child("a")


async def test_snapshot_is_json_and_shows_subtrees(autojump_clock: MockClock) -> None:
    """snapshot() gives states, restarts, uptime and subtrees, and serialises to JSON."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(id="sub", start=tree(puppets, "x")),
        ],
        name="root",
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(3)
        puppets.exit("a")
        await settle()
        await trio.sleep(2)
        snap = sup.snapshot()
        data = json.loads(json.dumps(snap.to_dict()))
    assert data["name"] == "root"
    assert data["restarts_in_window"] == 1
    a, sub = data["children"]
    assert (a["state"], a["restarts"], a["uptime"], a["incarnation"]) == ("running", 1, 2.0, 2)
    assert "ScriptedCrash" in a["last_exit"]
    assert sub["supervisor"]["name"] == "root/sub"
    assert sub["supervisor"]["children"][0]["id"] == "x"


# -------------------------------------------------------------------- backoff


async def test_backoff_delays_each_restart_exponentially(autojump_clock: MockClock) -> None:
    """With backoff, consecutive restarts wait 1, 2, 4 seconds (no jitter)."""
    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=crash_after, args=(0,))],
        backoff=specs.Backoff(wait_initial=1, wait_max=100, wait_jitter=0),
        intensity=3,
        period=100,
    )
    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(spec, hooks=[recorder]):
            await trio.sleep_forever()
    starts = recorder.times(events.ChildRestarted)
    exits = recorder.times(events.ChildExited)
    assert [s - e for s, e in zip(starts, exits, strict=False)] == [1, 2, 4]
    delays = [e.delay for e in recorder.events if isinstance(e, events.RestartScheduled)]
    assert delays == [1, 2, 4]


async def test_backoff_resets_after_healthy_running(autojump_clock: MockClock) -> None:
    """After reset_after seconds of running, the next restart waits wait_initial again."""
    recorder = Recorder()
    runs = iter([0, 0, 50, 0])

    async def flaky() -> None:
        await trio.sleep(next(runs, 1000))
        raise RuntimeError("flaky")

    spec = SupervisorSpec(
        children=[ChildSpec(id="f", start=flaky)],
        backoff=specs.Backoff(wait_initial=1, wait_max=100, wait_jitter=0, reset_after=30),
        intensity=10,
        period=1,
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(200)
    delays = [e.delay for e in recorder.events if isinstance(e, events.RestartScheduled)]
    assert delays == [1, 2, 1, 2]


async def test_pending_restart_shows_next_restart_time(autojump_clock: MockClock) -> None:
    """A child waiting for its restart is RESTARTING with the time left in the snapshot."""
    puppets = Puppets()
    spec = tree(puppets, "a", backoff=specs.Backoff(wait_initial=8, wait_jitter=0))
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await settle()
        await trio.sleep(3)
        child = sup.snapshot().children[0]
        assert (child.state, child.next_restart_in) == (ChildState.RESTARTING, 5.0)
        await trio.sleep(5)
        await settle()
        assert sup.snapshot().children[0].state is ChildState.RUNNING


async def test_shutdown_cancels_pending_restart(autojump_clock: MockClock) -> None:
    """Shutting down while a restart waits never starts the child again."""
    puppets = Puppets()
    spec = tree(puppets, "a", backoff=specs.Backoff(wait_initial=100, wait_max=100, wait_jitter=0))
    async with supervisor.open_supervisor(spec, hooks=[]):
        puppets.exit("a")
        await settle()
    assert puppets.starts["a"] == 1


async def test_shutdown_does_not_wait_for_orphaned_restart_timers(
    autojump_clock: MockClock,
) -> None:
    """A backoff timer no child waits on any more does not hold up the supervisor's end."""
    puppets = Puppets()
    spec = tree(
        puppets,
        "a",
        "b",
        strategy=specs.ONE_FOR_ALL,
        backoff=specs.Backoff(wait_initial=100, wait_max=100, wait_jitter=0),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await settle()
        await sup.terminate_child("a")
        await sup.terminate_child("b")
    assert trio.current_time() < 100
    assert puppets.starts == {"a": 1, "b": 1}


async def test_stale_restart_timer_leaves_a_child_restarted_by_hand(
    autojump_clock: MockClock,
) -> None:
    """A cancelled restart's timer that runs out later does not start the child again."""
    puppets = Puppets()
    spec = tree(puppets, "a", backoff=specs.Backoff(wait_initial=10, wait_jitter=0), intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await settle()
        await sup.terminate_child("a")
        await sup.restart_child("a")
        await trio.sleep(20)
        [child] = sup.which_children()
        assert (child.state, child.incarnation, puppets.starts["a"]) == (
            ChildState.RUNNING,
            2,
            2,
        )


async def test_group_restart_waits_then_starts_the_group(autojump_clock: MockClock) -> None:
    """rest_for_one with backoff: the later children stop at once and start with the failed one."""
    puppets, recorder = Puppets(), Recorder()
    spec = tree(
        puppets,
        "a",
        "b",
        strategy=specs.REST_FOR_ONE,
        backoff=specs.Backoff(wait_initial=3, wait_jitter=0),
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        puppets.exit("a")
        await settle()
        assert [c.state for c in sup.which_children()] == [ChildState.RESTARTING] * 2
        await trio.sleep(3)
        await settle()
        assert [c.state for c in sup.which_children()] == [ChildState.RUNNING] * 2
    assert recorder.times(events.ChildRestarted) == [3.0, 3.0]


async def test_failure_delay_hint_wins_over_backoff(autojump_clock: MockClock) -> None:
    """An exit reason carrying supervisor_restart_delay sets the restart delay."""

    class FloodWait(Exception):
        supervisor_restart_delay = 300.0

    async def flood(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise FloodWait

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="f", start=flood)],
        backoff=specs.Backoff(wait_initial=1, wait_jitter=0),
        intensity=1,
        period=1,
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(301)
    assert recorder.times(events.ChildRestarted) == [300.0]


# -------------------------------------------------------------- auto shutdown


async def test_any_significant_exit_ends_the_supervisor(autojump_clock: MockClock) -> None:
    """auto_shutdown=ANY_SIGNIFICANT: a significant child's normal exit stops the supervisor."""
    puppets, recorder = Puppets(), Recorder()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=puppets.worker, args=("a",)),
            ChildSpec(
                id="s",
                start=return_after,
                args=(5,),
                restart=specs.TRANSIENT,
                significant=True,
            ),
        ],
        auto_shutdown=specs.ANY_SIGNIFICANT,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: supervisor.run_supervisor(
                spec, hooks=[recorder], task_status=task_status
            )
        )
    assert trio.current_time() == 5
    assert recorder.lifecycle()[-1] == ("stop", "a")


async def test_all_significant_waits_for_the_last(autojump_clock: MockClock) -> None:
    """auto_shutdown=ALL_SIGNIFICANT: the supervisor stops when its last significant child ends."""
    spec = SupervisorSpec(
        children=[
            ChildSpec(
                id=f"s{n}", start=return_after, args=(n,), restart=specs.TEMPORARY, significant=True
            )
            for n in (2, 7)
        ],
        auto_shutdown=specs.ALL_SIGNIFICANT,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: supervisor.run_supervisor(spec, hooks=[], task_status=task_status)
        )
    assert trio.current_time() == 7


# --------------------------------------------------------------------- events


async def test_logging_hook_writes_otp_report_fields(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The default hook logs a crash at ERROR with supervisor, errorContext, reason, offender."""
    puppets = Puppets()
    with caplog.at_level(logging.INFO, logger="supervisor"):
        async with supervisor.open_supervisor(tree(puppets, "a"), name="root"):
            puppets.exit("a")
            await settle()
    crash = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(crash) == 1
    record: Any = crash[0]
    assert (record.supervisor, record.error_context, record.offender) == (
        "root",
        "child_terminated",
        "a",
    )
    assert "ScriptedCrash" in record.reason


async def test_failing_hook_does_not_break_the_supervisor(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged once, however often it fails; supervision goes on."""

    def bad_hook(event: events.Event) -> None:
        raise ValueError("hook bug")

    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[bad_hook]) as sup:
        puppets.exit("a")
        await settle()
        assert sup.which_children()[0].incarnation == 2
    assert caplog.text.count("ValueError: hook bug") == 1


async def test_history_is_bounded(autojump_clock: MockClock) -> None:
    """The handle keeps only the newest `history` events."""
    puppets = Puppets()
    async with supervisor.open_supervisor(
        tree(puppets, "a", intensity=100), history=5, hooks=[]
    ) as sup:
        for _ in range(10):
            puppets.exit("a")
            await settle()
        assert len(sup.history) == 5
        assert isinstance(sup.history[-1], events.ChildRestarted)


# ------------------------------------------------------------------- guards


async def test_shutdown_grace_outside_a_child_is_an_error(autojump_clock: MockClock) -> None:
    """shutdown_grace() outside a supervised child raises RuntimeError."""
    with pytest.raises(RuntimeError, match="supervised child"), supervisor.shutdown_grace():
        pass  # pragma: no cover


async def test_run_supervisor_rejects_non_specs(autojump_clock: MockClock) -> None:
    """run_supervisor with something that is not a spec raises SpecError."""
    with pytest.raises(specs.SpecError):
        await supervisor.run_supervisor("nope")  # type: ignore[call-overload]


async def test_significant_child_needs_auto_shutdown_in_start_child(
    autojump_clock: MockClock,
) -> None:
    """start_child of a significant child under auto_shutdown=NEVER raises SpecError."""
    puppets = Puppets()
    async with supervisor.open_supervisor(tree(puppets, "a"), hooks=[]) as sup:
        with pytest.raises(specs.SpecError, match="significant"):
            await sup.start_child(
                ChildSpec(id="s", start=forever, restart=specs.TRANSIENT, significant=True)
            )


def test_infinity_is_math_inf() -> None:
    """INFINITY is a float, so shutdown arithmetic needs no special case."""
    assert math.inf == specs.INFINITY


# ------------------------------------------------------- restart-time context


async def test_current_child_tells_restarts_and_last_exit(autojump_clock: MockClock) -> None:
    """A restarted child reads its restart count and why its previous incarnation ended."""
    seen: list[supervisor.ChildContext] = []

    async def remembers(task_status: trio.TaskStatus[None]) -> None:
        seen.append(supervisor.current_child())
        task_status.started()
        if len(seen) < 3:
            raise ValueError(f"attempt {len(seen)}")
        await trio.sleep_forever()

    spec = SupervisorSpec(children=[ChildSpec(id="r", start=remembers)], name="root")
    async with supervisor.open_supervisor(spec, hooks=[]):
        await settle()
    assert [(c.id, c.incarnation, c.restarts) for c in seen] == [
        ("r", 1, 0),
        ("r", 2, 1),
        ("r", 3, 2),
    ]
    assert seen[0].last_exit is None
    last = seen[2].last_exit
    assert last is not None
    assert repr(last.exception) == "ValueError('attempt 2')"


async def test_current_child_outside_a_child_is_an_error(autojump_clock: MockClock) -> None:
    """current_child() outside a supervised child raises RuntimeError."""
    with pytest.raises(RuntimeError, match="supervised child"):
        supervisor.current_child()


async def test_snapshot_keeps_failure_statistics(autojump_clock: MockClock) -> None:
    """The snapshot counts exits by kind, keeps recent exits and the time to recover."""
    puppets = Puppets()
    spec = tree(puppets, "a", backoff=specs.Backoff(wait_initial=2, wait_jitter=0), intensity=9)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        puppets.exit("a")
        await trio.sleep(5)
        puppets.exit("a", "normal")
        await trio.sleep(10)
        child = sup.snapshot().children[0]
    assert child.exits_by_kind == {"ScriptedCrash": 1, "normal": 1}
    assert [reason for _, reason in child.recent_exits] == ["ScriptedCrash('a')", "normal"]
    assert (child.last_recovery, child.mean_recovery) == (4.0, 3.0)


async def test_exit_reasons_do_not_keep_crashed_incarnations_alive(
    autojump_clock: MockClock,
) -> None:
    """A kept exit reason's traceback holds no locals: each crashed incarnation is freed."""
    import gc
    import weakref

    class Big:
        """A stand-in for what a crashed incarnation held (a client, a buffer)."""

    refs: list[weakref.ref[Big]] = []

    async def crashy(task_status: trio.TaskStatus[None]) -> None:
        held = Big()
        refs.append(weakref.ref(held))
        task_status.started()
        await trio.sleep(1)
        raise RuntimeError("crash")

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=crashy)], intensity=100, period=1)
    async with supervisor.open_supervisor(spec, hooks=[]):
        await trio.sleep(5.5)
        gc.collect()
        assert [ref() is None for ref in refs] == [True] * 5 + [False]


# ------------------------------------------------------- plain children's order


async def _plain(name: str, order: list[str], crash: dict[str, trio.Event]) -> None:
    """A child without task_status: records when its code begins, crashes on cue."""
    order.append(name)
    crash[name] = trio.Event()
    await crash[name].wait()
    raise RuntimeError(name)


def _plain_tree(
    order: list[str], crash: dict[str, trio.Event], strategy: specs.Strategy
) -> SupervisorSpec:
    return SupervisorSpec(
        children=[ChildSpec(id=name, start=_plain, args=(name, order, crash)) for name in "abcde"],
        strategy=strategy,
        intensity=100,
    )


async def test_plain_children_start_in_order(autojump_clock: MockClock) -> None:
    """Children without task_status run their code in start order (trio reverses half the time)."""
    for _ in range(20):  # an unordered start passes 20 runs with probability 2**-20
        order: list[str] = []
        spec = _plain_tree(order, {}, specs.ONE_FOR_ONE)
        async with supervisor.open_supervisor(spec, hooks=[]):
            assert order == list("abcde")


@pytest.mark.parametrize(
    ("strategy", "crashing", "restarted"),
    [(specs.ONE_FOR_ALL, "c", "abcde"), (specs.REST_FOR_ONE, "b", "bcde")],
)
async def test_plain_children_restart_in_order(
    autojump_clock: MockClock, strategy: specs.Strategy, crashing: str, restarted: str
) -> None:
    """After a group restart, plain children's code begins again in start order."""
    for _ in range(20):
        order: list[str] = []
        crash: dict[str, trio.Event] = {}
        async with supervisor.open_supervisor(_plain_tree(order, crash, strategy), hooks=[]):
            crash[crashing].set()
            await settle()
            assert order[5:] == list(restarted)


# ---------------------------------------------------------- hostage children


KILL_ALLOWANCE = supervisor._shutdown.KILL_ALLOWANCE


async def _hostage(
    release: trio.Event, ended: list[float], task_status: trio.TaskStatus[None]
) -> None:
    """A child that catches its cancellation and runs on until ``release`` is set."""
    task_status.started()
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await release.wait()
    ended.append(trio.current_time())


@attrs.define
class _Hostage:
    """A tree ``[h, a, b]`` (or ``[a, b, h]``) whose child ``h`` holds on after its stop."""

    puppets: Puppets = attrs.Factory(Puppets)
    recorder: Recorder = attrs.Factory(Recorder)
    release: trio.Event = attrs.Factory(trio.Event)
    ended: list[float] = attrs.Factory(list)

    def spec(
        self, *, shutdown: float | specs.BrutalKill = 2.0, first: bool = True, **kwargs: Any
    ) -> SupervisorSpec:
        hostage = ChildSpec(
            id="h", start=_hostage, args=(self.release, self.ended), shutdown=shutdown
        )
        others = [ChildSpec(id=i, start=self.puppets.worker, args=(i,)) for i in ("a", "b")]
        children = [hostage, *others] if first else [*others, hostage]
        return SupervisorSpec(children=children, **kwargs)

    @asynccontextmanager
    async def run(self, **kwargs: Any) -> AsyncIterator[supervisor.SupervisorHandle]:
        """open_supervisor; ``h`` lets go when the block ends (also on a failed assert)."""
        async with supervisor.open_supervisor(self.spec(**kwargs), hooks=[self.recorder]) as sup:
            try:
                yield sup
            finally:
                self.release.set()


def _timed_out(recorder: Recorder) -> list[tuple[str, float, bool]]:
    return [
        (e.child, e.grace, e.unresponsive)
        for e in recorder.events
        if isinstance(e, events.ShutdownTimedOut)
    ]


async def test_terminate_child_of_a_hostage_returns_after_its_grace(
    autojump_clock: MockClock,
) -> None:
    """terminate_child of a child that ignores its stop returns once its grace is spent."""
    h = _Hostage()
    async with h.run() as sup:
        start = trio.current_time()
        await sup.terminate_child("h")
        assert trio.current_time() == start + 2 + KILL_ALLOWANCE
        assert _timed_out(h.recorder) == [("h", 2.0, True)]
        assert sup.which_children()[0].state is ChildState.UNRESPONSIVE
        assert sup.count_children().unresponsive == 1
        assert sup.count_children().active == 2
        assert sup.snapshot().to_dict()["children"][0]["state"] == "unresponsive"


async def test_siblings_stay_supervised_while_a_child_is_held_up(
    autojump_clock: MockClock,
) -> None:
    """A sibling crashing while a hostage is being stopped is restarted once the grace is spent."""
    h = _Hostage()
    async with h.run() as sup:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.terminate_child, "h")
            await trio.sleep(1)
            h.puppets.exit("b")
        assert trio.current_time() == start + 2 + KILL_ALLOWANCE
        await settle()
        assert h.puppets.starts["b"] == 2
        h.puppets.exit("a")
        await settle()
        assert h.puppets.starts["a"] == 2
        assert sup.which_children()[0].state is ChildState.UNRESPONSIVE


async def test_restart_or_delete_of_an_unresponsive_child_is_refused(
    autojump_clock: MockClock,
) -> None:
    """restart_child and delete_child of an unresponsive child raise ChildUnresponsive."""
    h = _Hostage()
    async with h.run() as sup:
        await sup.terminate_child("h")
        with pytest.raises(supervisor.ChildUnresponsive, match="'h'"):
            await sup.restart_child("h")
        with pytest.raises(supervisor.ChildUnresponsive, match="'h'"):
            await sup.delete_child("h")


async def test_unresponsive_child_that_ends_is_recorded_and_restartable(
    autojump_clock: MockClock,
) -> None:
    """When the held-up task ends, a ChildTerminated records it and the child is stopped."""
    h = _Hostage()
    async with h.run() as sup:
        await sup.terminate_child("h")
        assert h.recorder.steps(events.ChildTerminated) == []
        await trio.sleep(10)
        h.release.set()
        await settle()
        assert h.recorder.steps(events.ChildTerminated) == [("ChildTerminated", "h")]
        assert sup.which_children()[0].state is ChildState.STOPPED
        await sup.restart_child("h")
        assert sup.which_children()[0].incarnation == 2


async def test_group_restart_does_not_start_a_second_incarnation_of_a_hostage(
    autojump_clock: MockClock,
) -> None:
    """one_for_all with a hostage: the others restart; it is not started while it still runs."""
    h = _Hostage()
    async with h.run(strategy=specs.ONE_FOR_ALL) as sup:
        h.puppets.exit("a")
        await trio.sleep(2 + KILL_ALLOWANCE)  # b stops, then h is given up on
        await settle()
        assert [c.state for c in sup.which_children()] == [
            ChildState.UNRESPONSIVE,
            ChildState.RUNNING,
            ChildState.RUNNING,
        ]
        assert [c.incarnation for c in sup.which_children()] == [1, 2, 2]
        h.release.set()
        await settle()
        assert sup.which_children()[0].state is ChildState.STOPPED


async def test_brutal_kill_hostage_is_unresponsive_after_the_allowance(
    autojump_clock: MockClock,
) -> None:
    """BRUTAL_KILL gives no grace: a child that ignores the kill is unresponsive at once after."""
    h = _Hostage()
    async with h.run(shutdown=specs.BRUTAL_KILL) as sup:
        start = trio.current_time()
        await sup.terminate_child("h")
        assert trio.current_time() == start + KILL_ALLOWANCE
        assert _timed_out(h.recorder) == [("h", 0.0, True)]


async def test_infinity_waits_for_a_hostage_forever(autojump_clock: MockClock) -> None:
    """shutdown=INFINITY keeps OTP's meaning: the supervisor waits for the child to end."""
    h = _Hostage()
    async with h.run(shutdown=specs.INFINITY) as sup:
        returned: list[float] = []

        async def terminate() -> None:
            await sup.terminate_child("h")
            returned.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(terminate)
            await trio.sleep(10_000)
            assert returned == []
            h.release.set()
        assert returned == h.ended
        assert _timed_out(h.recorder) == []
        assert sup.which_children()[0].state is ChildState.STOPPED


async def test_final_shutdown_names_the_hostage_once_and_stops_the_others(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Leaving the block with a hostage: it is named (event, one ERROR record), the rest stop."""
    h = _Hostage()
    spec = h.spec(first=False)  # h is stopped first
    hooks: list[events.Hook] = [h.recorder, events.logging_hook]
    unresponsive = trio.Event()

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.ShutdownTimedOut) and event.unresponsive:
            unresponsive.set()

    async def release_later() -> None:
        await unresponsive.wait()
        await trio.sleep(100)  # trio cannot leave the block while the task runs
        h.release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_later)
        async with supervisor.open_supervisor(spec, hooks=[*hooks, on_event]):
            start = trio.current_time()
    assert h.ended == [start + 2 + KILL_ALLOWANCE + 100]
    # the shutdown goes on past h: b and a stop, then h's late end is recorded
    assert h.recorder.lifecycle()[3:] == [("stop", "b"), ("stop", "a"), ("stop", "h")]
    assert _timed_out(h.recorder) == [("h", 2.0, True)]
    offenders = [r for r in caplog.records if getattr(r, "error_context", None) == "shutdown_error"]
    assert [(r.levelno, getattr(r, "offender", None)) for r in offenders] == [(logging.ERROR, "h")]
    assert "unresponsive" in offenders[0].getMessage()


# ------------------------------------------------------ hooks and crash reports


class _FailingHandler(logging.Handler):
    """A logging handler that raises on every record."""

    def emit(self, record: logging.LogRecord) -> None:
        raise OSError("disk full")


async def test_failing_logging_handler_does_not_end_the_tree(
    autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raising handler on the supervisor logger is reported once on stderr; the tree goes on."""
    handler = _FailingHandler()
    log = logging.getLogger("supervisor")
    log.addHandler(handler)
    try:
        puppets = Puppets()
        async with supervisor.open_supervisor(
            tree(puppets, "a", intensity=10), hooks=[events.logging_hook]
        ) as sup:
            for _ in range(3):
                puppets.exit("a")
                await settle()
            assert sup.which_children()[0].incarnation == 4
    finally:
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("event hook") == 1
    assert "OSError: disk full" in err


async def test_keyboard_interrupt_from_a_hook_propagates(autojump_clock: MockClock) -> None:
    """A hook's KeyboardInterrupt is not contained: it ends the tree, after an ordered stop."""
    puppets = Puppets()

    def interrupt(event: events.Event) -> None:
        if isinstance(event, events.ChildRestarted):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with supervisor.open_supervisor(tree(puppets, "a", "b"), hooks=[interrupt]):
            puppets.exit("a")
            await trio.sleep_forever()
    assert not puppets.running


async def _crash_here() -> None:
    await trio.sleep(1)
    raise RuntimeError("boom")


async def _fail_to_start(task_status: trio.TaskStatus[None]) -> None:
    raise LookupError("no config")


async def test_crash_report_carries_the_traceback(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The ERROR record of an abnormal exit has exc_info: the traceback shows where it crashed."""
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=_crash_here)], intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[events.logging_hook]):
        await trio.sleep(1.5)
    crashes = [r for r in caplog.records if getattr(r, "error_context", "") == "child_terminated"]
    assert crashes
    assert crashes[0].exc_info is not None
    assert repr(crashes[0].exc_info[1]) == "RuntimeError('boom')"
    text = logging.Formatter().format(crashes[0])
    assert 'raise RuntimeError("boom")' in text
    assert "in _crash_here" in text


async def test_start_failure_report_carries_the_traceback(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The ERROR record of a failed start has the start's traceback."""
    spec = SupervisorSpec(children=[ChildSpec(id="s", start=_fail_to_start)])
    with pytest.raises(supervisor.FailedToStartChild):
        async with supervisor.open_supervisor(spec, hooks=[events.logging_hook]):
            pass
    (record,) = [r for r in caplog.records if getattr(r, "error_context", "") == "start_error"]
    assert "in _fail_to_start" in logging.Formatter().format(record)


async def test_normal_exit_report_has_no_traceback(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Only abnormal exits carry exc_info: a normal exit's record has none."""
    caplog.set_level(logging.INFO, logger="supervisor")
    spec = SupervisorSpec(children=[ChildSpec(id="n", start=return_after, args=(1,))])
    async with supervisor.open_supervisor(spec, hooks=[events.logging_hook]):
        await trio.sleep(1.5)
    exits = [r for r in caplog.records if getattr(r, "offender", "") == "n"]
    assert exits
    assert all(r.exc_info is None for r in exits)


async def test_structlog_crash_event_carries_the_exception(autojump_clock: MockClock) -> None:
    """structlog_hook passes the crash's exception as exc_info, for structlog to render."""
    import structlog

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=_crash_here)], intensity=5)
    with structlog.testing.capture_logs() as logs:
        async with supervisor.open_supervisor(spec, hooks=[supervisor.structlog_hook()]):
            await trio.sleep(1.5)
    crash = next(e for e in logs if e["event"] == "supervisor.child_terminated")
    assert isinstance(crash["exc_info"], RuntimeError)
    started = next(e for e in logs if e["event"] == "supervisor.progress")
    assert "exc_info" not in started


# ---------------------------------------------------------- restart in place


async def test_plain_one_for_one_child_restarts_in_the_task_it_crashed_in(
    autojump_clock: MockClock,
) -> None:
    """A plain one_for_one child without backoff is restarted in its own task, events unchanged."""
    tasks: list[trio.lowlevel.Task] = []

    async def crashes() -> None:
        tasks.append(trio.lowlevel.current_task())
        await crash_after(1)

    recorder = Recorder()
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=crashes)], intensity=10, period=100)
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        await trio.sleep(2.5)
        assert sup.which_children()[0].incarnation == 3
    assert len(tasks) == 3
    assert all(task is tasks[0] for task in tasks)
    assert recorder.lifecycle() == [("start", "c"), ("exit", "c")] * 2 + [
        ("start", "c"),
        ("stop", "c"),
    ]


async def test_task_status_child_restarts_in_its_task_its_start_recorded_by_the_loop(
    autojump_clock: MockClock,
) -> None:
    """A task_status child is restarted in its own task; no hook runs inside its started()."""
    tasks: list[trio.lowlevel.Task] = []
    inside_started = False
    hooked_inside: list[bool] = []

    async def crashes(task_status: trio.TaskStatus[None]) -> None:
        nonlocal inside_started
        tasks.append(trio.lowlevel.current_task())
        await trio.sleep(0.5)  # ready only after a while: the loop waits for it
        inside_started = True
        task_status.started()
        inside_started = False
        await crash_after(1)

    recorder = Recorder()

    def hook(event: events.Event) -> None:
        hooked_inside.append(inside_started)
        recorder(event)

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=crashes)], intensity=10, period=100)
    async with supervisor.open_supervisor(spec, hooks=[hook]) as sup:
        await trio.sleep(3.25)  # from 0.5, when the first one was ready
        assert sup.which_children()[0].incarnation == 3
    assert len(tasks) == 3
    assert all(task is tasks[0] for task in tasks)
    assert not any(hooked_inside)
    assert recorder.lifecycle() == [("start", "c"), ("exit", "c")] * 2 + [
        ("start", "c"),
        ("stop", "c"),
    ]
    assert recorder.times(events.ChildRestarted) == [2.0, 3.5]


async def test_task_status_children_crashing_together_restart_one_after_another(
    autojump_clock: MockClock,
) -> None:
    """Each exit waits until the child restarted before it is ready and recorded, as OTP."""
    go = trio.Event()

    async def crashes(task_status: trio.TaskStatus[None]) -> None:
        if supervisor.current_child().incarnation > 1:
            await trio.sleep(1)  # a slow start
            task_status.started()
            await trio.sleep_forever()
        task_status.started()
        await go.wait()
        raise RuntimeError("together")

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id=c, start=crashes) for c in "abc"], intensity=10, period=100
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(1)
        go.set()
        await trio.sleep(10)
    restarted = [e for e in recorder.events if isinstance(e, events.ChildRestarted)]
    assert [e.time for e in restarted] == [2.0, 3.0, 4.0]
    after = recorder.lifecycle()[3:9]  # in whichever order trio woke them
    assert after[0::2] == [("exit", e.child) for e in restarted]
    assert after[1::2] == [("start", e.child) for e in restarted]
    assert sorted(e.child for e in restarted) == ["a", "b", "c"]


async def test_task_status_children_crashing_together_restart_in_place_in_order(
    autojump_clock: MockClock,
) -> None:
    """Ready at once, task_status children crashing together each restart in their own task.

    Each start is recorded before the next exit, as the loop would (OTP's
    order): exit, start, exit, start.
    """
    go = trio.Event()
    tasks: dict[str, set[trio.lowlevel.Task]] = {c: set() for c in "abcd"}

    async def crashes(name: str, task_status: trio.TaskStatus[None]) -> None:
        tasks[name].add(trio.lowlevel.current_task())
        task_status.started()
        if supervisor.current_child().incarnation > 1:
            await trio.sleep_forever()
        await go.wait()
        raise RuntimeError("together")

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id=c, start=crashes, args=(c,)) for c in "abcd"], intensity=10
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(1)
        go.set()
        await settle()
    assert all(len(t) == 1 for t in tasks.values())
    after = recorder.lifecycle()[4:12]
    assert [step for step, _ in after] == ["exit", "start"] * 4
    assert after[0::2] == [("exit", c) for _, c in after[1::2]]
    assert sorted(c for _, c in after[1::2]) == list("abcd")


async def test_rest_for_one_last_child_restarts_in_its_task(autojump_clock: MockClock) -> None:
    """Under rest_for_one the last child restarts alone, in place; an earlier one takes the rest."""
    tasks: dict[str, list[trio.lowlevel.Task]] = {"a": [], "b": []}
    crash: dict[str, trio.Event] = {"a": trio.Event(), "b": trio.Event()}

    async def child(name: str) -> None:
        tasks[name].append(trio.lowlevel.current_task())
        await crash[name].wait()
        crash[name] = trio.Event()
        raise RuntimeError(name)

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id=c, start=child, args=(c,)) for c in "ab"],
        strategy=specs.REST_FOR_ONE,
        intensity=10,
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        crash["b"].set()
        await settle()
        assert tasks["b"][1] is tasks["b"][0]  # restarted in its own task
        crash["a"].set()
        await settle()
        assert tasks["b"][2] is not tasks["b"][0]  # stopped and started with a
    assert [len(t) for t in tasks.values()] == [2, 3]
    assert recorder.lifecycle()[2:] == [
        ("exit", "b"),
        ("start", "b"),
        ("exit", "a"),
        ("stop", "b"),
        ("start", "a"),
        ("start", "b"),
        ("stop", "b"),
        ("stop", "a"),
    ]


async def test_a_child_restarted_in_place_knows_its_supervisor(
    autojump_clock: MockClock,
) -> None:
    """current_supervisor() in a plain child restarted in its own task is its supervisor's."""
    handles: list[supervisor.SupervisorHandle] = []

    async def crashes() -> None:
        handles.append(supervisor.current_supervisor())  # type: ignore[arg-type]
        await crash_after(1)

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=crashes)], intensity=10, period=100)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(2.5)
    assert len(handles) == 3
    assert all(handle is sup for handle in handles)


async def test_plain_child_in_place_gives_up_on_the_same_restart(
    autojump_clock: MockClock,
) -> None:
    """Restarted in place, a crashing plain child still exceeds intensity on restart 3 of 2."""
    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=crash_after, args=(1,))], intensity=2, period=10
    )
    with pytest.raises(supervisor.MaxIntensityReached):
        async with supervisor.open_supervisor(spec, hooks=[recorder]):
            await trio.sleep_forever()
    assert recorder.lifecycle() == [("start", "c"), ("exit", "c")] * 3 + [("gave_up", "c")]


async def test_exit_during_an_api_call_is_handled_after_the_call(
    autojump_clock: MockClock,
) -> None:
    """A plain child crashing while terminate_child waits for a sibling's cleanup waits its turn."""
    cue = trio.Event()

    async def crashes_on_cue() -> None:
        if supervisor.current_child().incarnation == 1:
            await cue.wait()
            raise RuntimeError("boom")
        await trio.sleep_forever()

    async def slow_to_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with supervisor.shutdown_grace():
                await trio.sleep(2)

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=crashes_on_cue),
            ChildSpec(id="b", start=slow_to_stop, shutdown=5),
        ]
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.terminate_child, "b")
            await trio.sleep(1)
            cue.set()
        await settle()
        assert [c.incarnation for c in sup.which_children()] == [2, 1]
    assert recorder.lifecycle()[:5] == [
        ("start", "a"),
        ("start", "b"),
        ("stop", "b"),
        ("exit", "a"),
        ("start", "a"),
    ]


async def test_exit_queued_first_is_handled_first(autojump_clock: MockClock) -> None:
    """A plain child's crash does not overtake an earlier crash still queued for the loop."""
    plain_go = trio.Event()

    async def handshake(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if supervisor.current_child().incarnation == 1:
            await trio.sleep(1)
            plain_go.set()
            raise RuntimeError("first")
        await trio.sleep_forever()

    async def plain() -> None:
        if supervisor.current_child().incarnation == 1:
            await plain_go.wait()
            raise RuntimeError("second")
        await trio.sleep_forever()

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="h", start=handshake), ChildSpec(id="p", start=plain)],
        intensity=5,
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(2)
    assert recorder.lifecycle()[2:6] == [
        ("exit", "h"),
        ("start", "h"),
        ("exit", "p"),
        ("start", "p"),
    ]


async def test_count_children_follows_every_transition(autojump_clock: MockClock) -> None:
    """count_children, kept as statuses change, always equals a count over which_children."""
    puppets = Puppets()
    spec = SupervisorSpec(
        children=[
            ChildSpec(id="a", start=puppets.plain_worker, args=("a",)),
            ChildSpec(id="b", start=puppets.worker, args=("b",)),
            ChildSpec(id="s", start=SupervisorSpec(children=[ChildSpec(id="x", start=forever)])),
        ],
        intensity=10,
    )

    def check(sup: supervisor.SupervisorHandle) -> None:
        rows = sup.which_children()
        active = sum(1 for c in rows if c.state is ChildState.RUNNING)
        assert sup.count_children() == supervisor.ChildCounts(
            specs=len(rows),
            active=active,
            supervisors=sum(1 for c in rows if c.kind == "supervisor"),
            workers=sum(1 for c in rows if c.kind == "worker"),
        )

    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        check(sup)
        puppets.exit("a")
        puppets.exit("b")
        await settle()
        check(sup)
        await sup.terminate_child("b")
        check(sup)
        await sup.delete_child("b")
        check(sup)
        await sup.terminate_child("s")
        check(sup)
        await sup.restart_child("s")
        check(sup)
        await sup.start_child(ChildSpec(id="t", start=forever, restart=specs.TEMPORARY))
        check(sup)
        await sup.terminate_child("t")
        check(sup)
        assert sup.count_children().specs == 2


async def test_plain_child_backoff_restart_in_place_is_on_schedule(
    autojump_clock: MockClock,
) -> None:
    """A plain child's backoff restart, started by its timer in place, begins at its due time."""
    begun: list[float] = []

    async def crashes() -> None:
        begun.append(trio.current_time())
        if len(begun) < 3:
            await crash_after(1)
        await trio.sleep_forever()

    recorder = Recorder()
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=crashes)],
        intensity=10,
        backoff=specs.Backoff(wait_initial=2, wait_jitter=0, wait_exp_base=2),
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        start = trio.current_time()
        await trio.sleep(20)
    assert [t - start for t in begun] == [0, 3, 8]
    scheduled = [e for e in recorder.events if isinstance(e, events.RestartScheduled)]
    assert [(e.delay, e.failures) for e in scheduled] == [(2, 1), (4, 2)]


# ------------------------------------------- classification and failure kinds


class KindedError(Exception):
    """A failure that declares its kind, as the workers' typed failures do."""

    def __init__(self, kind: str, *, normal: bool = False, delay: float | None = None) -> None:
        super().__init__(kind)
        self.supervisor_failure_kind = kind
        self.supervisor_normal_exit = normal
        self.supervisor_restart_delay = delay


@attrs.define(eq=False)
class Failing:
    """A child that raises its next error after each start: ``runs`` seconds, else ``after``."""

    errors: list[BaseException]
    after: float = 1.0
    runs: list[float] = attrs.Factory(list)
    starts: list[float] = attrs.Factory(list)

    async def __call__(self) -> None:
        self.starts.append(trio.current_time())
        await trio.sleep(self.runs.pop(0) if self.runs else self.after)
        if self.errors:
            raise self.errors.pop(0)
        await trio.sleep_forever()


def _as_kind(kind: str) -> specs.Classifier:
    def classify(error: BaseException) -> BaseException:
        return error if hasattr(error, "supervisor_failure_kind") else KindedError(kind)

    return classify


async def _reasons(spec: SupervisorSpec, wait: float) -> list[supervisor.ExitReason]:
    recorder = Recorder()
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(wait)
    return [e.reason for e in recorder.events if isinstance(e, events.ChildExited)]


async def test_tree_classifier_maps_a_childs_exception(autojump_clock: MockClock) -> None:
    """A tree's classifier turns a child's exception into the typed failure its reason holds."""
    child = Failing([ValueError("raw")])
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=child)], classifier=_as_kind("x"))
    (reason,) = await _reasons(spec, 1.5)
    assert isinstance(reason.exception, KindedError)
    assert reason.failure_kind == "x"
    assert isinstance(reason.exception.__cause__, ValueError)


async def test_childs_classifier_overrides_its_trees(autojump_clock: MockClock) -> None:
    """A child's own classifier wins over its supervisor's."""
    child = Failing([ValueError("raw")])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child, classifier=_as_kind("mine"))],
        classifier=_as_kind("tree"),
    )
    (reason,) = await _reasons(spec, 1.5)
    assert reason.failure_kind == "mine"


async def test_subtree_inherits_its_parents_classifier_unless_it_sets_one(
    autojump_clock: MockClock,
) -> None:
    """A subtree without a classifier uses its parent's; one with its own uses that."""
    plain, own = Failing([ValueError()]), Failing([ValueError()])
    recorder = Recorder()
    spec = SupervisorSpec(
        classifier=_as_kind("parent"),
        children=[
            ChildSpec(id="a", start=SupervisorSpec(children=[ChildSpec(id="p", start=plain)])),
            ChildSpec(
                id="b",
                start=SupervisorSpec(
                    children=[ChildSpec(id="o", start=own)], classifier=_as_kind("own")
                ),
            ),
        ],
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(1.5)
    kinds = {
        e.child: e.reason.failure_kind for e in recorder.events if isinstance(e, events.ChildExited)
    }
    assert kinds == {"p": "parent", "o": "own"}


async def test_shutdown_is_not_classified(autojump_clock: MockClock) -> None:
    """supervisor.Shutdown is the supervisor's own: the classifier never sees it."""
    seen: list[BaseException] = []

    def classify(error: BaseException) -> BaseException:
        seen.append(error)
        return error

    child = Failing([supervisor.Shutdown("done")])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child, restart=specs.TRANSIENT)], classifier=classify
    )
    (reason,) = await _reasons(spec, 1.5)
    assert seen == []
    assert reason.kind is specs.policy.ExitKind.SHUTDOWN
    assert reason.failure_kind is None


async def test_a_classifier_that_raises_is_contained_and_reported_once(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing classifier leaves the original exception as the reason, logged once."""

    def broken(error: BaseException) -> BaseException:
        raise KeyError("classifier bug")

    child = Failing([ValueError("one"), ValueError("two")])
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=child)], classifier=broken)
    with caplog.at_level(logging.ERROR, logger="supervisor"):
        reasons = await _reasons(spec, 2.5)
    assert [type(r.exception) for r in reasons] == [ValueError, ValueError]
    assert [r.failure_kind for r in reasons] == ["unknown", "unknown"]
    assert sum("classifier" in r.getMessage() for r in caplog.records) == 1


async def test_an_undeclared_exception_is_of_unknown_kind(autojump_clock: MockClock) -> None:
    """Without a classifier or a declared kind, a failure is of kind ``unknown``."""
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=Failing([ValueError()]))])
    (reason,) = await _reasons(spec, 1.5)
    assert reason.failure_kind == "unknown"


# ------------------------------------------------ decisions per failure kind


def _policy(**rules: specs.KindRule) -> specs.FailurePolicy:
    return specs.FailurePolicy(rules=rules)


async def test_stay_down_keeps_a_permanent_child_stopped_until_restart_child(
    autojump_clock: MockClock,
) -> None:
    """A STAY_DOWN kind leaves even a PERMANENT child stopped, visible; restart_child revives it."""
    child = Failing([KindedError("auth")])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        failure_policy=_policy(auth=specs.KindRule(decision=specs.Decision.STAY_DOWN)),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(30)
        assert len(child.starts) == 1
        (info,) = sup.which_children()
        assert info.state is ChildState.STOPPED
        (snap,) = sup.snapshot().children
        assert snap.last_exit == "KindedError('auth')"
        await sup.restart_child("c")
        assert len(child.starts) == 2


async def test_escalate_gives_up_at_once(autojump_clock: MockClock) -> None:
    """An ESCALATE kind ends the supervisor on its first failure, whatever the intensity."""
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=Failing([KindedError("fatal")]))],
        intensity=100,
        failure_policy=_policy(fatal=specs.KindRule(decision=specs.Decision.ESCALATE)),
    )
    with pytest.raises(supervisor.MaxIntensityReached) as caught:
        await supervisor.run_supervisor(spec, hooks=[])
    assert caught.value.escalated
    assert "escalates failures of kind 'fatal'" in str(caught.value)


async def test_a_spent_budget_stays_down(autojump_clock: MockClock) -> None:
    """budget=2: two failures of the kind are restarted, the third stays down."""
    child = Failing([KindedError("flood") for _ in range(5)])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=_policy(flood=specs.KindRule(budget=2)),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(60)
        assert len(child.starts) == 3
        assert sup.which_children()[0].state is ChildState.STOPPED


async def test_a_spent_budget_may_escalate(autojump_clock: MockClock) -> None:
    """when_spent=ESCALATE: the failure beyond the budget ends the supervisor."""
    child = Failing([KindedError("flood") for _ in range(5)])
    rule = specs.KindRule(budget=1, when_spent=specs.Decision.ESCALATE)
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=_policy(flood=rule),
    )
    with pytest.raises(supervisor.MaxIntensityReached):
        await supervisor.run_supervisor(spec, hooks=[])
    assert len(child.starts) == 2


async def test_a_healthy_run_refills_the_budget(autojump_clock: MockClock) -> None:
    """A run of reset_after seconds clears the kind's count: the budget starts over."""
    child = Failing([KindedError("flood") for _ in range(5)], runs=[1, 1, 20, 1, 1])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=specs.FailurePolicy(
            rules={"flood": specs.KindRule(budget=2)}, reset_after=10
        ),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(60)
        # two failures use the budget up; the healthy run's failure starts it
        # over: one more restart, and the fifth failure is the third in a row
        assert len(child.starts) == 5
        assert sup.which_children()[0].state is ChildState.STOPPED


async def test_budget_counts_only_its_window(autojump_clock: MockClock) -> None:
    """Failures older than the rule's window no longer count toward its budget."""
    child = Failing([KindedError("flood") for _ in range(6)], after=6.0)
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=_policy(flood=specs.KindRule(budget=1, window=5)),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(60)
        assert len(child.starts) == 7  # never two failures within 5 s
        assert sup.which_children()[0].state is ChildState.RUNNING


async def test_kinds_restart_on_their_own_backoff(autojump_clock: MockClock) -> None:
    """A kind's backoff paces its restarts by its own consecutive count: 1, 2, 4 s."""
    child = Failing([KindedError("net") for _ in range(3)], after=0.0)
    backoff = specs.Backoff(wait_initial=1, wait_exp_base=2, wait_max=300, wait_jitter=0)
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=specs.FailurePolicy(backoff=backoff),
    )
    async with supervisor.open_supervisor(spec, hooks=[]):
        await trio.sleep(20)
    gaps = [b - a for a, b in zip(child.starts, child.starts[1:], strict=False)]
    assert gaps == [1, 2, 4]


async def test_a_failures_own_delay_beats_the_kinds_backoff(autojump_clock: MockClock) -> None:
    """A failure's restart delay (a FloodWait's seconds) wins over the policy's backoff."""
    child = Failing([KindedError("flood", delay=6)], after=0.0)
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        failure_policy=specs.FailurePolicy(backoff=specs.Backoff(wait_initial=1, wait_jitter=0)),
    )
    async with supervisor.open_supervisor(spec, hooks=[]):
        await trio.sleep(20)
    assert [b - a for a, b in zip(child.starts, child.starts[1:], strict=False)] == [6.0]


async def test_no_policy_keeps_otp_behaviour(autojump_clock: MockClock) -> None:
    """Without a failure policy, a kind that a policy would stop is restarted as OTP does."""
    child = Failing([KindedError("auth") for _ in range(3)], after=1.0)
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=child)], intensity=100)
    async with supervisor.open_supervisor(spec, hooks=[]):
        await trio.sleep(10)
    assert len(child.starts) == 4


# --------------------------------------------------------- recovery statistics


async def test_recovery_statistics_per_kind_and_action(autojump_clock: MockClock) -> None:
    """snapshot() counts failures per kind, recoveries that worked and not, and actions."""
    errors: list[BaseException] = [KindedError("net"), KindedError("net"), KindedError("auth")]
    child = Failing(errors, runs=[1, 6, 1])
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        intensity=100,
        failure_policy=specs.FailurePolicy(
            rules={"auth": specs.KindRule(decision=specs.Decision.STAY_DOWN)}, reset_after=5
        ),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        # net at 1 s; its restart holds 6 s (worked), net again; that
        # restart fails 1 s later (did not), with auth: it stays down
        await trio.sleep(20)
        (snap,) = sup.snapshot().children
    recovery = snap.recovery
    assert recovery is not None
    assert (recovery.failures, recovery.recovered, recovery.not_recovered) == (3, 1, 1)
    assert recovery.actions == {"restart": 2, "stay_down": 1}
    assert recovery.by_kind["net"].actions == {"restart": 2}
    assert recovery.by_kind["auth"].failures == 1
    assert [kind for _, kind, _ in recovery.last_failures] == ["net", "net", "auth"]
    json.dumps(snap.to_dict())  # JSON-serialisable


async def test_a_restarted_child_up_long_enough_counts_as_recovered(
    autojump_clock: MockClock,
) -> None:
    """A restart whose child has run healthy for reset_after shows as a recovery that worked."""
    child = Failing([KindedError("net")], after=1.0)
    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=child)],
        failure_policy=specs.FailurePolicy(reset_after=5),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(3)
        assert sup.snapshot().children[0].recovery.recovered == 0  # type: ignore[union-attr]
        await trio.sleep(5)
        assert sup.snapshot().children[0].recovery.recovered == 1  # type: ignore[union-attr]


async def test_last_failures_keep_the_latest_hundred(autojump_clock: MockClock) -> None:
    """Only the last 100 failures are kept, with their time and kind."""
    child = Failing([KindedError(f"k{i % 3}") for i in range(130)], after=1.0)
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=child)], intensity=10**6)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(140)
        recovery = sup.snapshot().children[0].recovery
    assert recovery is not None
    assert recovery.failures == 130
    assert len(recovery.last_failures) == 100
    assert recovery.last_failures[-1][0] == child.starts[-1]


async def test_recent_exits_are_the_last_ten_of_failures_and_normal_exits(
    autojump_clock: MockClock,
) -> None:
    """recent_exits holds the last 10 exits in order, failures and normal ones mixed."""
    outcomes = ["f"] * 12 + ["n"] + ["f"] * 3 + ["n", "n"] + ["f"] * 9
    seen: list[str] = []

    async def child() -> None:
        await trio.sleep(1)
        outcome = outcomes[len(seen)] if len(seen) < len(outcomes) else "stay"
        seen.append(outcome)
        if outcome == "f":
            raise KindedError(f"k{len(seen)}")
        if outcome == "stay":
            await trio.sleep_forever()

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=child)], intensity=10**6)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        checked = 0.0
        for cut in (5, 12, 13, 16, 18, len(outcomes)):
            await trio.sleep(cut + 0.5 - checked)  # exit k comes at k seconds
            checked = cut + 0.5
            snap = sup.snapshot().children[0]
            expected = [
                f"KindedError('k{i + 1}')" if o == "f" else "normal"
                for i, o in enumerate(outcomes[:cut])
            ]
            assert [reason for _, reason in snap.recent_exits] == expected[-10:]
            assert snap.recovery is not None
            failures = [(k, r) for k, r in enumerate(expected) if r != "normal"]
            assert [r for _, _, r in snap.recovery.last_failures] == [r for _, r in failures]


async def test_idle_children_have_no_statistics(autojump_clock: MockClock) -> None:
    """A child that never exited has no statistics record at all (no memory per idle child)."""
    spec = SupervisorSpec(children=[ChildSpec(id="c", start=forever)])
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(1)
        assert sup.snapshot().children[0].recovery is None
        assert sup._core.children["c"].stats is None


async def test_only_the_last_exit_keeps_its_exception(autojump_clock: MockClock) -> None:
    """Past exits are kept as text: their exceptions (tracebacks, frames) are freed."""
    raised: list[weakref.ref[BaseException]] = []

    class Crash(RuntimeError):
        """A crash that can be weakly referenced."""

    async def crashes() -> None:
        await trio.sleep(1)
        error = Crash(f"crash {len(raised)}")
        raised.append(weakref.ref(error))
        raise error

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=crashes)], intensity=10)
    async with supervisor.open_supervisor(spec, hooks=[], history=0) as sup:
        await trio.sleep(4.5)
        gc.collect()
        alive = [ref() is not None for ref in raised]
        (child,) = sup.snapshot().children
    assert alive == [False, False, False, True]  # the last one is the child's last_exit
    assert [text for _, text in child.recent_exits] == [f"Crash('crash {i}')" for i in range(4)]


async def test_a_crash_traceback_begins_in_the_child(autojump_clock: MockClock) -> None:
    """The exit reason's traceback starts at the child's own code, not at its runner."""
    exits: list[events.ChildExited] = []

    def hook(event: events.Event) -> None:
        if isinstance(event, events.ChildExited):
            exits.append(event)

    spec = SupervisorSpec(children=[ChildSpec(id="c", start=_crash_here)], intensity=5)
    async with supervisor.open_supervisor(spec, hooks=[hook]):
        await trio.sleep(1.5)
    error = exits[0].reason.exception
    assert error is not None
    assert error.__traceback__ is not None
    assert error.__traceback__.tb_frame.f_code is _crash_here.__code__


async def test_terminated_during_its_in_place_backoff_the_child_is_not_started_late(
    autojump_clock: MockClock,
) -> None:
    """terminate_child cancels a plain child's pending restart; its runner's wait does nothing."""
    begun: list[int] = []

    async def crashes_first() -> None:
        begun.append(supervisor.current_child().incarnation)
        if len(begun) == 1:
            await crash_after(1)
        await trio.sleep_forever()

    spec = SupervisorSpec(
        children=[ChildSpec(id="c", start=crashes_first)],
        backoff=specs.Backoff(wait_initial=5, wait_jitter=0),
    )
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(2)
        assert sup.which_children()[0].state is ChildState.RESTARTING
        await sup.terminate_child("c")
        await sup.restart_child("c")
        await trio.sleep(10)
        assert [(c.state, c.incarnation) for c in sup.which_children()] == [(ChildState.RUNNING, 2)]
    assert begun == [1, 2]
