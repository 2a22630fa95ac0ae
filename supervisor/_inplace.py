"""The in-place restart: a child restarted alone, in its runner's own task.

When the loop waits with nothing queued, a runner reporting its child's
end (:func:`report`) may carry out what the loop would do with it, in the
same order, with the same pure decisions, transitions and events
(:func:`restart_in_place`), and run the next incarnation itself, as a
hand-written ``while True`` loop would; after a backoff delay the runner is
the restart's timer (:func:`wait_due`). Until that incarnation is ready the
loop takes no message, as it would have waited for it; a plain child is
ready as its code begins (its runner records it: :func:`ready_in_place`),
one with a ``task_status`` inside its ``started()``, where no hook may run:
it wakes the loop, which records it before anything else (:func:`settle`),
unless the next runner to report, outside any child's code, does so first
(:func:`catch_up`). Anything else is posted to the loop
(``_core.Supervisor._on_exit``), which stays the one place a crash is decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from specs import ONE_FOR_ONE, REST_FOR_ONE
from specs.policy import ExitAction, exit_action, restart_delay

from ._child import Exited

if TYPE_CHECKING:
    from ._child import Following, Incarnation, NextRun
    from ._core import Supervisor
    from ._status import Child, Restarting


def report(sup: Supervisor, inc: Incarnation) -> Following:
    """A runner's report of its child's end: taken in place if it may be, else posted."""
    catch_up(sup)
    now = trio.current_time()
    if takes_in_place(sup, inc, now):
        return restart_in_place(sup, inc, now)
    assert inc.reason is not None  # set before the runner reports
    sup.post(Exited(inc.child, inc.number, inc.reason))
    return None


def takes_in_place(sup: Supervisor, inc: Incarnation, now: float) -> bool:
    """Whether a runner may carry out its child's exit itself (:func:`restart_in_place`).

    Only when the loop is waiting with nothing queued (so no API call,
    group restart or earlier exit is mid-flight, and none is reordered:
    each posted message clears ``_in_place``) and no child restarted in
    place is still starting (the loop records its start before anything
    else: :func:`settle`); only for a child its strategy restarts alone
    (:func:`restarts_alone`); without a ``failure_policy`` (its verdict
    may turn a restart into something else); and only for an exit that
    is restarted, with intensity allowing it. Pure checks: nothing is
    changed.
    """
    if not sup._in_place or sup._inflight is not None or sup.spec.failure_policy:
        return False
    child = sup.children.get(inc.child)
    if child is None or child.inc is not inc or inc.reason is None:
        return False
    if not restarts_alone(sup, child.id):
        return False
    action = exit_action(child.spec.restart, inc.reason.kind, dynamic=sup.dynamic)
    return action is ExitAction.RESTART and sup.restarts.allows(
        now, intensity=sup.spec.intensity, period=sup.spec.period
    )


def restarts_alone(sup: Supervisor, child_id: str) -> bool:
    """Whether restarting ``child_id`` restarts it alone: no sibling stops or starts.

    Always under one_for_one; rest_for_one restarts it and those after it,
    one_for_all all of them (``plan_restart``): with none but itself, that
    is it alone (rest_for_one of the last child costs what one_for_one does).
    """
    strategy = sup.strategy
    if strategy is ONE_FOR_ONE:
        return True
    if next(reversed(sup.children)) != child_id:
        return False
    return strategy is REST_FOR_ONE or len(sup.children) == 1


def restart_in_place(sup: Supervisor, inc: Incarnation, now: float) -> Following:
    """What the loop would do with ``inc``'s exit at ``now`` (:func:`takes_in_place` said yes).

    The same pure decisions, transitions and events, in the same order
    as ``_on_exit``, ``_restart``, ``_start_group`` and ``_start`` for
    one child: the next incarnation is returned, to run in the runner's
    own task, as a hand-written ``while True`` loop would; after a
    backoff delay, the runner itself is the restart's timer
    (:func:`wait_due`), and starts it in place too when it may.
    """
    child = sup.children[inc.child]
    reason = inc.reason
    assert reason is not None
    action, _ = sup._exited(child, inc, reason, now)
    assert action is ExitAction.RESTART  # as takes_in_place found
    sup.restarts.add(now, intensity=sup.spec.intensity, period=sup.spec.period)
    failures = child.count_failure(sup.spec.backoff)
    delay = restart_delay(sup.spec.backoff, failures, hint=reason.restart_delay, rng=sup.rng)
    if delay > 0:
        pending = sup._schedule(child, (child.id,), delay, now, failures, timer=False)
        return wait_due(sup, pending, child.id)
    # the runner stays in its soft scope, and the next incarnation shares
    # it: never cancelled, as only a stop cancels it and a stopped
    # incarnation is not reported here
    return begin_in_place(sup, child, inc.soft_scope)


async def wait_due(sup: Supervisor, pending: Restarting, child_id: str) -> NextRun | None:
    """A runner waits out its child's backoff delay: the restart's timer, in its task."""
    assert pending.at is not None
    await trio.sleep_until(pending.at)
    following = start_due(sup, pending, child_id)
    if following is None:
        sup.post_due(pending, (child_id,))
    return following


def start_due(sup: Supervisor, pending: Restarting, child_id: str) -> NextRun | None:
    """A timer fell due for one child: begin it here if it may be (:func:`due_in_place`)."""
    catch_up(sup)
    if not due_in_place(sup, pending, child_id):
        return None
    return begin_in_place(sup, sup.children[child_id])


def begin_in_place(sup: Supervisor, child: Child, scope: trio.CancelScope | None = None) -> NextRun:
    """Begin ``child``'s next incarnation, to run in the reporting runner's task.

    ``scope``: the runner's soft scope, still entered and not cancelled,
    for the new incarnation to share (see ``run_incarnation``).
    """
    following = child.begin(sup.name, restarted=True, scope=scope)
    following.owner = sup
    # a plain child is ready as its code begins, in its runner; one with a
    # task_status inside its own started(), where no hook may run: the loop
    # records that one (settle), as it would have after waiting for it
    following.on_ready = sup._wake if child.handshake else sup._ready_in_place
    sup._inflight = following
    function, args, handshake = sup._runner_call(child)
    return following, function, args, handshake


def ready_in_place(sup: Supervisor, inc: Incarnation) -> None:
    """A plain child restarted in place is ready (or failed to start): record it now.

    Its runner calls this right before the child's code begins (or after it
    failed), never from inside the child's code.
    """
    # the time it signalled ready is now: this runs inside its signal
    _record_start(sup, inc, inc.started_at if inc.started else trio.current_time())


def catch_up(sup: Supervisor) -> None:
    """Before a runner goes on with an exit or a timer: record a start the loop has not yet.

    A task_status child restarted in place that is ready woke the loop,
    which records its start before it takes anything else (:func:`settle`).
    While the loop is still idle, a runner about to report (outside any
    child's code) may record it first itself: the same step, in the same
    order, and the next exit can then be taken in place too. The wake-up
    left queued then finds nothing to do.
    """
    inc = sup._inflight
    if sup._in_place and inc is not None and inc.is_ready:
        settle(sup)


def settle(sup: Supervisor) -> None:
    """The loop records the start of the child restarted in place, ready or failed.

    Before it takes any message (``_core.Supervisor._serve``): as it would
    have right after waiting for it to be ready.
    """
    inc = sup._inflight
    assert inc is not None
    assert inc.is_ready
    _record_start(sup, inc, trio.current_time())


def _record_start(sup: Supervisor, inc: Incarnation, now: float) -> None:
    """What the loop does once a child it started is ready, or failed to start."""
    sup._inflight = None
    child = sup.children.get(inc.child)
    if child is None or child.inc is not inc or inc.stop_requested:
        return  # stopped meanwhile, by the supervisor's end: its stop records it
    if sup._started(child, inc, now, restarted=True) is not None:
        sup._retry_start(child, (child.id,))


def due_in_place(sup: Supervisor, pending: Restarting, child_id: str) -> bool:
    """Whether a timer may start its one child itself (see :func:`takes_in_place`)."""
    if not sup._in_place or sup._inflight is not None:
        return False
    child = sup.children.get(child_id)
    return child is not None and child.status is pending
