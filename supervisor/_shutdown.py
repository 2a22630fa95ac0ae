"""Stopping children: the ordered stop, and a child that will not stop.

:func:`terminate` stops one child: it cancels it, gives it its shutdown
grace, then ``KILL_ALLOWANCE`` for its cut-short cleanup to unwind; a child
still running then is unresponsive (trio cannot kill a task), and its end
is recorded when it comes at last (:func:`ended_late`). :func:`stop_all` is
a supervisor's ordered shutdown: reverse start order, or all at once for a
dynamic one (as OTP). The loop (``_core``) calls these; they decide nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from specs import BRUTAL_KILL, TEMPORARY

from ._events import ChildTerminated, ShutdownTimedOut
from ._reasons import release_frames

if TYPE_CHECKING:
    from ._child import Incarnation
    from ._core import Supervisor
    from ._status import Child

#: Seconds a stopped child's task may take to end after its grace is spent
#: (its cut-short cleanup unwinding), before it is unresponsive.
KILL_ALLOWANCE: Final = 1.0


def grace_of(child: Child) -> float:
    """A child's shutdown grace in seconds (``BRUTAL_KILL`` is none)."""
    shutdown = child.spec.shutdown
    return 0.0 if shutdown is BRUTAL_KILL else float(shutdown)


async def terminate(sup: Supervisor, child: Child) -> None:
    """Stop a running child: cancel it, give it its grace, then cut its cleanup short."""
    inc = child.inc
    if inc is None:
        return
    seconds = grace_of(child)
    inc.request_stop(trio.current_time() + seconds)
    await await_stopped(sup, child, inc, seconds)


async def await_stopped(sup: Supervisor, child: Child, inc: Incarnation, grace: float) -> None:
    """Wait for a stopped child to end: its grace, then ``KILL_ALLOWANCE`` at most.

    A child that still runs then caught its cancellation (or shields
    itself): trio cannot kill it, so the loop stops waiting, reports it
    and goes on; it is :class:`Unresponsive` until its task ends
    (:func:`ended_late`). ``INFINITY`` waits forever, as OTP's ``infinity``.
    """
    if not inc.is_done:
        # most children end within the scheduling round their cancellation
        # takes: give them that round before paying for a deadline scope
        await trio.lowlevel.cancel_shielded_checkpoint()
    if grace > 0 and not inc.is_done:
        with trio.CancelScope(deadline=inc.grace_deadline):
            await inc.done.wait()
    overran = not inc.is_done
    if overran:
        # its shutdown_grace scopes are being cut short right now: let
        # that cleanup unwind before calling it unresponsive
        with trio.move_on_after(KILL_ALLOWANCE):
            await inc.done.wait()
    if not inc.is_done:
        inc.unresponsive = True
        child.unresponsive(inc)
        timed_out(sup, child, grace, unresponsive=True)
        return
    if grace > 0 and (overran or inc.cut_short):
        timed_out(sup, child, grace, unresponsive=False)
    stopped(sup, child, inc)


def timed_out(sup: Supervisor, child: Child, grace: float, *, unresponsive: bool) -> None:
    """Report a child that overran its grace (and whether it is unresponsive)."""
    now = trio.current_time()
    sup.emit(
        ShutdownTimedOut(
            supervisor=sup.name,
            path=sup.path,
            child=child.id,
            grace=grace,
            unresponsive=unresponsive,
            time=now,
        )
    )


def stopped(sup: Supervisor, child: Child, inc: Incarnation) -> None:
    """Record a stopped child's end."""
    child.terminated()
    assert inc.reason is not None
    release_frames(inc.reason.exception)
    sup.emit(
        ChildTerminated(
            supervisor=sup.name,
            path=sup.path,
            child=child.id,
            incarnation=inc.number,
            reason=inc.reason,
            time=trio.current_time(),
        )
    )


async def stop_all(sup: Supervisor) -> None:
    """Stop every child: in reverse start order, or all at once if dynamic (as OTP)."""
    for child in sup.children.values():
        child.cancel_restart()
    if not sup.dynamic:
        for child in reversed(list(sup.children.values())):
            await terminate(sup, child)
        return
    live = [(c, inc) for c in sup.children.values() if (inc := c.inc) is not None]
    now = trio.current_time()
    for child, inc in live:
        inc.request_stop(now + grace_of(child))
    for child, inc in live:
        await await_stopped(sup, child, inc, grace_of(child))


async def record_late_ends(sup: Supervisor) -> None:
    """After the loop: wait for unresponsive children's tasks, and record each end."""
    for child in list(sup.children.values()):
        inc = child.stuck
        if inc is not None:
            await inc.done.wait()
            ended_late(sup, child, inc)


def ended_late(sup: Supervisor, child: Child, inc: Incarnation) -> None:
    """An unresponsive child's task ended at last: its stop is complete."""
    stopped(sup, child, inc)
    # what its stop would have forgotten waited until now (never two
    # records of one id, never a lost live task)
    if sup.dynamic or child.spec.restart is TEMPORARY:
        del sup.children[child.id]
