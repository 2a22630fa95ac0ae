"""Tests for the worker actor base: lifecycle, mailbox, registry, probes, typed exits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import specs
import supervisor
import workers
from specs import SupervisorSpec
from supervisor import ChildState, events

from .helpers import Recorder


async def settle() -> None:
    """Let the tree carry out everything pending."""
    await trio.testing.wait_all_tasks_blocked()


class Counter(workers.Worker):
    """A worker with state per incarnation, answering calls and casts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[str] = []
        self.total = 0

    async def init(self, ctx: workers.Context) -> None:
        self.log.append(f"init {ctx.child.incarnation}")
        self.count = 0

    async def terminate(self, ctx: workers.Context, reason: BaseException | None) -> None:
        self.log.append(f"terminate {type(reason).__name__}")

    async def handle_call(self, ctx: workers.Context, request: Any) -> Any:
        if request == "crash":
            raise workers.ConnectionLost(code=1011)
        if request == "slow":
            await trio.sleep(100)
        if request == "who":
            return ctx.child.incarnation
        self.count += request
        return self.count

    async def handle_cast(self, ctx: workers.Context, message: Any) -> None:
        self.total += message


def one(worker: workers.Worker, **kwargs: Any) -> SupervisorSpec:
    """A tree of one worker, id "w"."""
    return SupervisorSpec(children=[worker.child_spec("w", **kwargs)], intensity=10, period=1)


async def test_init_run_terminate_and_fresh_state(autojump_clock: MockClock) -> None:
    """init runs before ready; a crash runs terminate with its failure; init starts afresh."""
    registry = workers.Registry()
    worker = Counter(registry=registry)
    async with supervisor.open_supervisor(one(worker), hooks=[]):
        assert await registry.call("w", 5) == 5
        with pytest.raises(workers.CalleeExited) as caught:
            await registry.call("w", "crash")
        assert isinstance(caught.value.reason, workers.ConnectionLost)
        await settle()
        assert await registry.call("w", 1) == 1
    assert worker.log == [
        "init 1",
        "terminate ConnectionLost",
        "init 2",
        "terminate NoneType",
    ]


async def test_call_reaches_the_current_incarnation(autojump_clock: MockClock) -> None:
    """After a restart, a call by name reaches the new incarnation."""
    registry = workers.Registry()
    async with supervisor.open_supervisor(one(Counter(registry=registry)), hooks=[]):
        assert await registry.call("w", "who") == 1
        with pytest.raises(workers.CalleeExited):
            await registry.call("w", "crash")
        await settle()
        assert await registry.call("w", "who") == 2


async def test_callers_of_a_crashing_worker_never_hang(autojump_clock: MockClock) -> None:
    """A caller waiting on a worker that crashes (or is stopped) gets CalleeExited."""
    registry = workers.Registry()
    outcomes: list[str] = []

    async def caller() -> None:
        try:
            await registry.call("w", "slow", timeout=1000)
        except workers.CalleeExited as error:
            outcomes.append(type(error.reason).__name__)

    async with (
        supervisor.open_supervisor(one(Counter(registry=registry)), hooks=[]) as sup,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(caller)
        await settle()
        await sup.terminate_child("w")
    assert outcomes == ["NoneType"]


async def test_call_timeout(autojump_clock: MockClock) -> None:
    """A call without a reply in time raises CallTimeout after exactly the timeout."""
    registry = workers.Registry()
    async with supervisor.open_supervisor(one(Counter(registry=registry)), hooks=[]):
        start = trio.current_time()
        with pytest.raises(workers.CallTimeout):
            await registry.call("w", "slow", timeout=3)
        assert trio.current_time() == start + 3


async def test_call_to_a_worker_that_is_down(autojump_clock: MockClock) -> None:
    """Calling or casting a name with no running incarnation raises NotRunning at once."""
    registry = workers.Registry()
    async with supervisor.open_supervisor(one(Counter(registry=registry)), hooks=[]) as sup:
        await sup.terminate_child("w")
        with pytest.raises(workers.NotRunning):
            await registry.call("w", 1)
        with pytest.raises(workers.NotRunning):
            await registry.cast("w", 1)


async def test_cast_is_handled_in_order(autojump_clock: MockClock) -> None:
    """Casts are handled in the order sent."""
    registry = workers.Registry()
    worker = Counter(registry=registry)
    async with supervisor.open_supervisor(one(worker), hooks=[]):
        for n in range(1, 11):
            await registry.cast("w", n)
        await settle()
    assert worker.total == 55


async def test_two_workers_cannot_share_a_name(autojump_clock: MockClock) -> None:
    """A second running worker registering an existing name fails to start."""
    registry = workers.Registry()
    spec = SupervisorSpec(
        children=[
            Counter(registry=registry, name="same").child_spec("a"),
            Counter(registry=registry, name="same").child_spec("b"),
        ]
    )
    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with supervisor.open_supervisor(spec, hooks=[]):
            pass  # pragma: no cover
    error = caught.value.error
    assert isinstance(error, workers.Crashed)
    assert isinstance(error.exception, workers.NameTaken)


async def test_init_failure_is_a_typed_start_failure(autojump_clock: MockClock) -> None:
    """An exception in init fails the start with its classified failure."""

    class Refused(workers.Worker):
        async def init(self, ctx: workers.Context) -> None:
            raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(supervisor.FailedToStartChild) as caught:
        async with supervisor.open_supervisor(one(Refused()), hooks=[]):
            pass  # pragma: no cover
    assert isinstance(caught.value.error, workers.ConnectionLost)
    assert isinstance(caught.value.error.__cause__, ConnectionRefusedError)


async def test_resources_are_fresh_per_incarnation_and_closed(autojump_clock: MockClock) -> None:
    """Resources entered with ctx.enter are opened per incarnation and closed after terminate."""
    opened: list[int] = []
    closed: list[int] = []

    class Resource:
        def __init__(self, n: int) -> None:
            self.n = n

        async def __aenter__(self) -> int:
            opened.append(self.n)
            return self.n

        async def __aexit__(self, *exc: object) -> None:
            closed.append(self.n)

    class Uses(workers.Worker):
        async def init(self, ctx: workers.Context) -> None:
            self.resource = await ctx.enter(Resource(ctx.child.incarnation))

        async def run(self, ctx: workers.Context) -> None:
            if self.resource == 1:
                raise workers.ServerError(status=502)
            await trio.sleep_forever()

    async with supervisor.open_supervisor(one(Uses()), hooks=[]):
        await settle()
    assert (opened, closed) == ([1, 2], [1, 2])


class Stoppable(workers.Worker):
    """Runs until stopped (or returns after ``returns_after`` s once); logs its exits."""

    def __init__(self, returns_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.returns_after = returns_after
        self.log: list[str] = []
        self.seen: list[Any] = []

    async def init(self, ctx: workers.Context) -> None:
        self.log.append(f"init {ctx.child.incarnation}")

    async def run(self, ctx: workers.Context) -> None:
        wait, self.returns_after = self.returns_after, None
        if wait is not None:
            await trio.sleep(wait)
            return
        await trio.sleep_forever()

    async def handle_cast(self, ctx: workers.Context, message: Any) -> None:
        self.seen.append(message)

    async def terminate(self, ctx: workers.Context, reason: BaseException | None) -> None:
        self.log.append(f"terminate {type(reason).__name__}")


def exits(recorder: Recorder) -> list[BaseException | None]:
    """The reasons of the children's exits, in order."""
    return [e.reason.exception for e in recorder.events if isinstance(e, events.ChildExited)]


async def test_run_returning_unasked_is_an_unexpected_stop(autojump_clock: MockClock) -> None:
    """A transient worker whose run returns without a stop request is restarted."""
    recorder = Recorder()
    worker = Stoppable(returns_after=1, registry=workers.Registry())
    spec = one(worker, restart=specs.TRANSIENT)
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        await trio.sleep(2)
        assert sup.which_children()[0].state is ChildState.RUNNING
        assert sup.which_children()[0].incarnation == 2
    [reason] = exits(recorder)
    assert isinstance(reason, workers.UnexpectedStop)
    assert reason.worker == "w"
    assert not reason.supervisor_normal_exit
    assert worker.log[:2] == ["init 1", "terminate UnexpectedStop"]


async def test_stop_from_outside_is_a_normal_exit(autojump_clock: MockClock) -> None:
    """worker.stop() cancels run; a transient worker then stays down, terminate sees None."""
    worker = Stoppable(registry=workers.Registry())
    async with supervisor.open_supervisor(one(worker, restart=specs.TRANSIENT), hooks=[]) as sup:
        worker.stop()
        await trio.sleep(10)
        child = sup.snapshot().children[0]
        assert (child.state, child.incarnation) == (ChildState.STOPPED, 1)
        with pytest.raises(workers.NotRunning):
            worker.stop()
    assert worker.log == ["init 1", "terminate NoneType"]


async def test_stop_from_inside_run_is_a_normal_exit(autojump_clock: MockClock) -> None:
    """ctx.stop() called by run itself ends the worker normally."""

    class Finishes(workers.Worker):
        async def run(self, ctx: workers.Context) -> None:
            await trio.sleep(1)
            ctx.stop()
            await trio.sleep_forever()  # cancelled by the stop

    recorder = Recorder()
    spec = one(Finishes(registry=workers.Registry()), restart=specs.TRANSIENT)
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        await trio.sleep(10)
        assert sup.which_children()[0].state is ChildState.STOPPED
    assert exits(recorder) == [None]


async def test_registry_stop_waits_for_the_exit(autojump_clock: MockClock) -> None:
    """registry.stop(name) is served after the messages before it and returns once it exited."""
    registry = workers.Registry()
    worker = Stoppable(registry=registry)
    async with supervisor.open_supervisor(one(worker, restart=specs.TRANSIENT), hooks=[]) as sup:
        await registry.cast("w", "first")
        await registry.stop("w")
        assert worker.seen == ["first"]
        assert worker.log == ["init 1", "terminate NoneType"]
        assert registry.whereis("w") is None
        await settle()
        assert sup.which_children()[0].state is ChildState.STOPPED
        with pytest.raises(workers.NotRunning):
            await registry.stop("w")


async def test_stop_during_init_takes_effect_after_it(autojump_clock: MockClock) -> None:
    """A stop asked for while init runs lets the start succeed, then ends the worker normally."""

    class StopsEarly(Stoppable):
        async def init(self, ctx: workers.Context) -> None:
            await super().init(ctx)
            self.stop()
            await trio.sleep(1)  # init is not cut short

    recorder = Recorder()
    worker = StopsEarly(registry=workers.Registry())
    async with supervisor.open_supervisor(
        one(worker, restart=specs.TRANSIENT), hooks=[recorder]
    ) as sup:
        await trio.sleep(10)
        assert sup.which_children()[0].state is ChildState.STOPPED
    assert recorder.lifecycle()[:2] == [("start", "w"), ("exit", "w")]
    assert exits(recorder) == [None]


async def test_a_stopped_permanent_worker_is_restarted(autojump_clock: MockClock) -> None:
    """A requested stop is a normal exit: a PERMANENT worker is restarted all the same (OTP)."""
    worker = Stoppable(registry=workers.Registry())
    async with supervisor.open_supervisor(one(worker), hooks=[]) as sup:
        worker.stop()
        await trio.sleep(10)
        assert sup.which_children()[0].incarnation == 2
        assert sup.which_children()[0].state is ChildState.RUNNING


async def test_reconnecting_child_spec_restarts_a_loop_that_returned(
    autojump_clock: MockClock,
) -> None:
    """A reconnecting worker whose loop returned comes back; one asked to stop stays down."""
    worker = Stoppable(returns_after=5, registry=workers.Registry())
    spec = SupervisorSpec(children=[worker.reconnecting_child_spec("feed")])
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(30)
        inner = sup.which_children()[0].value
        assert inner.which_children()[0].state is ChildState.RUNNING
        assert inner.which_children()[0].incarnation == 2
        worker.stop()
        await trio.sleep(30)
        feed = inner.snapshot().children[0]
        assert (feed.state, feed.incarnation) == (ChildState.STOPPED, 2)


async def test_failing_probe_ends_the_worker(autojump_clock: MockClock) -> None:
    """A probe that hangs past probe_timeout ends the worker with HeartbeatTimeout."""

    class Silent(workers.Worker):
        probe_interval = 10.0
        probe_timeout = 2.0

        async def probe(self, ctx: workers.Context) -> None:
            await trio.sleep_forever()

    recorder = Recorder()
    async with supervisor.open_supervisor(one(Silent()), hooks=[recorder]):
        await trio.sleep(13)
    exits = [e for e in recorder.events if isinstance(e, events.ChildExited)]
    assert [e.time for e in exits] == [12.0]
    failure = exits[0].reason.exception
    assert isinstance(failure, workers.HeartbeatTimeout)
    assert failure.after == 2.0


async def test_healthy_probe_keeps_the_worker(autojump_clock: MockClock) -> None:
    """A probe that answers in time never ends the worker."""

    class Healthy(workers.Worker):
        probe_interval = 1.0

        async def probe(self, ctx: workers.Context) -> None:
            await trio.sleep(0.5)

    async with supervisor.open_supervisor(one(Healthy()), hooks=[]) as sup:
        await trio.sleep(60)
        assert sup.which_children()[0].incarnation == 1


# -------------------------------------------------------- failure handling


class Fails(workers.Worker):
    """Fails with the next failure from a list each incarnation, then runs."""

    def __init__(self, failures: list[BaseException], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures

    async def run(self, ctx: workers.Context) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await trio.sleep_forever()


async def test_flood_wait_delays_exactly_while_siblings_run(autojump_clock: MockClock) -> None:
    """FloodWait(300) restarts that worker after exactly 300 s; its sibling keeps running."""
    recorder = Recorder()
    sibling = Counter(registry=workers.Registry())
    spec = SupervisorSpec(
        children=[
            Fails([workers.FloodWait(seconds=300)]).child_spec("flood"),
            sibling.child_spec("steady"),
        ],
        backoff=specs.Backoff(wait_initial=1, wait_jitter=0),
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]) as sup:
        await trio.sleep(150)
        assert [c.state for c in sup.which_children()] == [
            ChildState.RESTARTING,
            ChildState.RUNNING,
        ]
        assert sup.snapshot().children[0].next_restart_in == 150
        await trio.sleep(200)
    assert recorder.times(events.ChildRestarted) == [300.0]
    assert sibling.log == ["init 1", "terminate NoneType"]


async def test_auth_revoked_leaves_a_transient_worker_down_and_visible(
    autojump_clock: MockClock,
) -> None:
    """AuthRevoked is a normal exit: a transient worker stays stopped, its reason shown."""
    spec = one(Fails([workers.AuthRevoked(cause="401")]), restart=specs.TRANSIENT)
    async with supervisor.open_supervisor(spec, hooks=[]) as sup:
        await trio.sleep(100)
        child = sup.snapshot().children[0]
        assert (child.state, child.incarnation) == (ChildState.STOPPED, 1)
        assert child.last_exit == "AuthRevoked(cause='401')"
        await sup.restart_child("w")
        assert sup.which_children()[0].state is ChildState.RUNNING


@pytest.mark.parametrize(
    ("failure", "restarted_after"),
    [
        (workers.ConnectionLost(code=1001), 1.0),
        (workers.HeartbeatTimeout(after=5), 1.0),
        (workers.FloodWait(seconds=42), 42.0),
        (workers.RateLimited(retry_after=7), 7.0),
        (workers.RateLimited(), 1.0),
        (workers.ProxyFailed(proxy="p1"), 1.0),
        (workers.PoolExhausted(), 1.0),
        (workers.ServerError(status=502), 1.0),
        (workers.AuthRevoked(cause="x"), None),
        (workers.Conflict(detail="webhook"), None),
        (workers.Crashed(exception=ValueError("x")), 1.0),
    ],
)
async def test_each_failure_kind_sets_restart_and_delay(
    autojump_clock: MockClock, failure: workers.Failure, restarted_after: float | None
) -> None:
    """Each failure kind restarts a transient worker after its own delay, or leaves it down."""
    recorder = Recorder()
    spec = SupervisorSpec(
        children=[Fails([failure]).child_spec("w", restart=specs.TRANSIENT)],
        backoff=specs.Backoff(wait_initial=1, wait_jitter=0),
    )
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await trio.sleep(100)
    restarts = recorder.times(events.ChildRestarted)
    assert restarts == ([] if restarted_after is None else [restarted_after])


async def test_proxy_rotation_across_restarts(autojump_clock: MockClock) -> None:
    """A worker takes the next proxy after each ProxyFailed, from its restart context."""
    used: list[str] = []

    class Rotating(workers.Worker):
        proxies = ("p1", "p2", "p3", "p4")

        async def init(self, ctx: workers.Context) -> None:
            failed = ctx.last_failure
            previous = failed.proxy if isinstance(failed, workers.ProxyFailed) else None
            index = 0 if previous is None else self.proxies.index(previous) + 1
            self.proxy = self.proxies[index % len(self.proxies)]
            used.append(self.proxy)

        async def run(self, ctx: workers.Context) -> None:
            if self.proxy != "p4":
                raise workers.ProxyFailed(proxy=self.proxy)
            await trio.sleep_forever()

    async with supervisor.open_supervisor(one(Rotating()), hooks=[]):
        await settle()
    assert used == ["p1", "p2", "p3", "p4"]


async def test_library_exceptions_arrive_typed(autojump_clock: MockClock) -> None:
    """A library exception raised in run reaches the supervisor as its typed failure."""
    recorder = Recorder()
    spec = one(Fails([ConnectionResetError(104, "reset")]))
    async with supervisor.open_supervisor(spec, hooks=[recorder]):
        await settle()
    exit_event = next(e for e in recorder.events if isinstance(e, events.ChildExited))
    failure = exit_event.reason.exception
    assert isinstance(failure, workers.ConnectionLost)
    assert isinstance(failure.__cause__, ConnectionResetError)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["lost", "flood", "server"])),
        min_size=1,
        max_size=30,
    )
)
def test_no_failure_report_is_lost_or_reordered(burst: list[tuple[int, str]]) -> None:
    """Under bursts of failures across workers, each failure is reported once, in order."""
    make: dict[str, Callable[[int], workers.Failure]] = {
        "lost": lambda n: workers.ConnectionLost(code=n),
        "flood": lambda n: workers.FloodWait(seconds=0),
        "server": lambda n: workers.ServerError(status=500 + n),
    }
    plans: dict[int, list[BaseException]] = {i: [] for i in range(5)}
    expected: list[tuple[str, str]] = []
    for step, (index, kind) in enumerate(burst):
        failure = make[kind](step)
        plans[index].append(failure)
        expected.append((f"w{index}", repr(failure)))
    recorder = Recorder()
    spec = SupervisorSpec(
        children=[Fails(list(plans[i])).child_spec(f"w{i}") for i in range(5)],
        intensity=1000,
        period=1,
    )

    async def main() -> None:
        async with supervisor.open_supervisor(spec, hooks=[recorder]):
            await trio.sleep(1)

    trio.run(main, clock=MockClock(autojump_threshold=0))
    reported = [
        (e.child, repr(e.reason.exception))
        for e in recorder.events
        if isinstance(e, events.ChildExited)
    ]
    assert sorted(reported) == sorted(expected)
    for index in range(5):
        mine = [r for r in reported if r[0] == f"w{index}"]
        assert mine == [x for x in expected if x[0] == f"w{index}"]


def test_reconnecting_child_spec_uses_the_class_defaults() -> None:
    """reconnecting_child_spec wraps a worker in its own supervisor with the class's backoff."""

    class Tuned(workers.Worker):
        reconnect_backoff = specs.Backoff(wait_initial=2, wait_jitter=0)
        reconnect_intensity = 7

    child = Tuned().reconnecting_child_spec("w", period=9)
    inner = child.start
    assert isinstance(inner, SupervisorSpec)
    assert (inner.backoff, inner.intensity, inner.period) == (Tuned.reconnect_backoff, 7, 9)
    assert inner.children[0].restart is specs.TRANSIENT
    no_backoff = Tuned().reconnecting_child_spec("w", backoff=None).start
    assert isinstance(no_backoff, SupervisorSpec)
    assert no_backoff.backoff is None
