"""Chaos soak: a large tree under random faults, invariants checked throughout."""

from __future__ import annotations

import gc
import random
from collections import defaultdict, deque

import attrs
import trio
import trio.testing
from trio.testing import MockClock

import specs
import supervisor
from specs.policy import ExitAction
from supervisor import events

STRATEGIES = (specs.ONE_FOR_ONE, specs.REST_FOR_ONE, specs.ONE_FOR_ALL)


class ChaosCrash(Exception):
    """A worker's random failure."""


@attrs.define
class Chaos:
    """Random workers: they crash, exit normally, fail to start and hang on shutdown."""

    rng: random.Random
    mean_life: float
    start_failure: float = 0.05
    #: off while the tree starts: a failed initial start fails the tree, as in OTP
    armed: bool = False
    raised: list[int] = attrs.Factory(list)  # serials of the failures workers raised
    normal_exits: int = 0
    running: int = 0

    def fail(self, error: Exception) -> Exception:
        """Number a failure, so its report can be matched without keeping it alive."""
        error.chaos_serial = len(self.raised)  # type: ignore[attr-defined]
        self.raised.append(error.chaos_serial)  # type: ignore[attr-defined]
        return error

    async def worker(
        self, shutdown: float, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self.armed and self.rng.random() < self.start_failure:
            raise self.fail(ChaosCrash("start"))
        self.running += 1
        task_status.started()
        try:
            await trio.sleep(self.rng.expovariate(1 / self.mean_life))
            roll = self.rng.random()
            if roll < 0.7:
                raise self.fail(ChaosCrash("crash"))
            if roll < 0.85:
                raise self.fail(supervisor.Shutdown("done"))
            self.normal_exits += 1
        finally:
            self.running -= 1
            # some cleanups take longer than their grace and are cut short
            with supervisor.shutdown_grace():
                await trio.sleep(self.rng.choice((0.0, 0.0, shutdown / 2, shutdown * 2)))


def chaos_tree(chaos: Chaos, rng: random.Random, *, groups: int, size: int) -> specs.SupervisorSpec:
    """A root over ``groups`` subtrees of ``size`` workers each, every strategy, one dynamic."""
    children = []
    for g in range(groups):
        shutdown = rng.choice((0.5, 1.0))
        restart = rng.choice((specs.PERMANENT, specs.TRANSIENT, specs.TEMPORARY))
        if g % 4 == 3:
            subtree: specs.SupervisorSpec | specs.DynamicSupervisorSpec = (
                specs.DynamicSupervisorSpec(
                    template=specs.ChildSpec(
                        id="d",
                        start=chaos.worker,
                        args=(shutdown,),
                        restart=restart,
                        shutdown=shutdown,
                    ),
                    intensity=size // 4,
                    period=10,
                )
            )
        else:
            subtree = specs.SupervisorSpec(
                strategy=STRATEGIES[g % 3],
                # some subtrees are tight, so giving up and escalating happen too
                intensity=rng.choice((1, 2, size // 10 + 1)),
                period=10,
                children=[
                    specs.ChildSpec(
                        id=f"w{i}",
                        start=chaos.worker,
                        args=(shutdown,),
                        restart=rng.choice(list(specs.Restart)),
                        shutdown=shutdown,
                    )
                    for i in range(size)
                ],
            )
        children.append(specs.ChildSpec(id=f"g{g}", start=subtree))
    return specs.SupervisorSpec(name="root", children=children, intensity=1000, period=60)


@attrs.define
class Checker:
    """An event hook that checks invariants as events happen.

    Intensity: a supervisor's window never holds more than ``intensity + 1``
    restarts, and one holding that many gives up before it starts anything.
    Shutdown order: the stops a supervisor makes after its last start, exit
    or give-up (its own ordered shutdown) go newest first.
    """

    intensity: dict[str, tuple[int, float]]
    order: dict[str, list[str]]
    reported: list[int] = attrs.Factory(list)
    windows: dict[str, deque[float]] = attrs.Factory(lambda: defaultdict(deque))
    over_limit: set[str] = attrs.Factory(set)
    give_ups: int = 0
    errors: list[str] = attrs.Factory(list)
    tails: dict[str, list[str]] = attrs.Factory(lambda: defaultdict(list))

    def report(self, error: BaseException | None) -> None:
        serial = getattr(error, "chaos_serial", None)
        if serial is not None:
            self.reported.append(serial)

    def __call__(self, event: events.Event) -> None:
        sup = event.supervisor
        if not isinstance(event, events.ChildTerminated | events.ShutdownTimedOut):
            self.tails[sup] = []
        match event:
            case events.ChildExited(reason=reason, action=action, time=now):
                self.report(reason.exception)
                if action is ExitAction.RESTART and sup in self.intensity:
                    limit, period = self.intensity[sup]
                    window = self.windows[sup]
                    window.append(now)
                    while window and window[0] < now - period:
                        window.popleft()
                    if len(window) > limit + 1:
                        self.errors.append(f"{sup}: {len(window)} restarts in {period}s")
                    if len(window) == limit + 1:
                        self.over_limit.add(sup)
            case events.ChildTerminated(child=child, reason=reason):
                self.report(reason.exception)
                self.tails[sup].append(child)
            case events.StartFailed(error=error):
                self.report(error)
            case events.GaveUp():
                self.give_ups += 1
                self.windows.pop(sup, None)
                self.over_limit.discard(sup)
            case events.ChildStarted(child=child) | events.ChildRestarted(child=child):
                # a restarted subtree starts with a fresh intensity window
                self.windows.pop(f"{sup}/{child}", None)
                self.over_limit.discard(f"{sup}/{child}")
                if sup in self.over_limit:
                    self.errors.append(f"{sup} restarted past its intensity")
            case _:
                pass

    def check_shutdown_order(self) -> None:
        """Each supervisor's final stops came newest first."""
        for sup, tail in self.tails.items():
            ids = self.order.get(sup)
            if ids is None:  # dynamic: children stop all at once
                continue
            positions = [ids.index(child) for child in tail]
            if positions != sorted(positions, reverse=True):
                self.errors.append(f"{sup} stopped out of order: {tail}")


def _intensities(spec: specs.SupervisorSpec) -> dict[str, tuple[int, float]]:
    result = {"root": (spec.intensity, spec.period)}
    for child in spec.children:
        sub = child.start
        assert isinstance(sub, specs.SupervisorSpec | specs.DynamicSupervisorSpec)
        result[f"root/{child.id}"] = (sub.intensity, sub.period)
    return result


def _static_orders(spec: specs.SupervisorSpec) -> dict[str, list[str]]:
    orders = {"root": [c.id for c in spec.children]}
    for child in spec.children:
        if isinstance(child.start, specs.SupervisorSpec):
            orders[f"root/{child.id}"] = [c.id for c in child.start.children]
    return orders


async def _soak(
    rng: random.Random, *, groups: int, size: int, duration: float, mean_life: float
) -> tuple[Chaos, Checker, list[int]]:
    chaos = Chaos(rng=rng, mean_life=mean_life)
    spec = chaos_tree(chaos, rng, groups=groups, size=size)
    checker = Checker(_intensities(spec), _static_orders(spec))
    live_objects: list[int] = []
    async with supervisor.open_supervisor(spec, hooks=[checker], history=50) as sup:
        for group in sup.which_children():
            if isinstance(group.value, supervisor.DynamicSupervisorHandle):
                for _ in range(size):
                    await group.value.start_child()
        chaos.armed = True
        steps = 10
        for _ in range(steps):
            await trio.sleep(duration / steps)
            gc.collect()
            live_objects.append(len(gc.get_objects()))
    checker.check_shutdown_order()
    return chaos, checker, live_objects


def _check(chaos: Chaos, checker: Checker) -> None:
    assert not checker.errors, checker.errors[:5]
    assert chaos.running == 0
    # every failure a worker raised is reported exactly once
    assert sorted(checker.reported) == sorted(chaos.raised)


async def test_chaos_soak_on_the_mock_clock(autojump_clock: MockClock) -> None:
    """1,000 workers in nested trees of every strategy, 3 virtual hours of faults."""
    chaos, checker, live_objects = await _soak(
        random.Random(1), groups=10, size=100, duration=3 * 3600, mean_life=1800
    )
    _check(chaos, checker)
    assert len(chaos.raised) > 4_000
    assert checker.give_ups > 0
    # memory flat: live objects late in the run stay near what they were early on
    assert max(live_objects[-3:]) < 1.1 * max(live_objects[1:4]), live_objects


async def test_chaos_soak_on_the_real_clock() -> None:
    """A short real-clock run of a smaller chaotic tree keeps the same invariants."""
    chaos, checker, _ = await _soak(
        random.Random(2), groups=4, size=25, duration=2.0, mean_life=0.2
    )
    _check(chaos, checker)
    assert len(chaos.raised) > 20  # chaos happened (how much depends on the machine)
