"""Running one incarnation of a child: the only place a child's outcome is caught.

A child's exception never reaches the supervisor's nursery (that would cancel
its siblings): :func:`run_incarnation` catches it, turns it into the
incarnation's one :class:`~supervisor.ExitReason` (:meth:`ExitReason.of
<supervisor.ExitReason.of>`) and posts an :class:`Exited` message to its
supervisor's one loop (``_core.Supervisor._on_exit``), which decides. A start
that fails is not posted: the supervisor waiting on ``ready`` reads the same
reason.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import attrs
import trio

from ._reasons import STOPPED_EXIT, ExitReason


@attrs.frozen
class Exited:
    """The message a child's runner sends when the child's run ends on its own."""

    child: str
    incarnation: int
    reason: ExitReason


@attrs.frozen
class ChildContext:
    """What a running child may know about itself: see :func:`current_child`.

    Attributes:
        supervisor: Its supervisor's name.
        id: Its id.
        incarnation: 1 for the first start, 2 after the first restart, ...
        restarts: How many times its supervisor restarted it automatically.
        last_exit: Why the previous incarnation ended (``None`` the first
            time): a worker can take the next proxy after ``ProxyFailed``, or
            log in again after ``AuthRevoked``.
    """

    supervisor: str
    id: str
    incarnation: int
    restarts: int
    last_exit: ExitReason | None


@attrs.define(eq=False)
class Incarnation:
    """One run of a child, from its start to its exit (a "pid")."""

    child: str
    number: int
    supervisor: str = ""
    restarts: int = 0
    last_exit: ExitReason | None = None
    context: ChildContext | None = None  # built when a child first asks for it
    # its supervisor (a ``_core.Supervisor``): a supervisor opened inside it joins that tree
    owner: Any = None
    # shielded: only its supervisor stops a child, never an outer scope all at
    # once; cancel() on the scope itself still reaches the code inside. Shared
    # by the incarnations restarted in place (see ``run_incarnation``)
    soft_scope: trio.CancelScope = attrs.Factory(lambda: trio.CancelScope(shield=True))
    # ``ready`` and ``done`` are flags, with an event made only for whoever
    # waits: most incarnations are never waited on (fewer objects per child)
    is_ready: bool = False
    is_done: bool = False
    _ready: trio.Event | None = None
    _done: trio.Event | None = None
    started: bool = False
    started_at: float = 0.0
    value: Any = None
    start_error: BaseException | None = None
    reason: ExitReason | None = None
    stop_requested: bool = False
    grace_deadline: float = math.inf
    grace_scopes: list[trio.CancelScope] | None = None
    cut_short: bool = False
    # set by its supervisor when it outlived its stop and its grace: its end,
    # whenever it comes, is still reported
    unresponsive: bool = False
    # called once, right before ``ready`` is set (started, or failed to start),
    # for an incarnation whose supervisor does not wait on ``ready`` itself
    on_ready: Callable[[Incarnation], None] | None = None

    @property
    def ready(self) -> trio.Event:
        """Set once it started, or failed to start."""
        if self._ready is None:
            self._ready = trio.Event()
            if self.is_ready:
                self._ready.set()
        return self._ready

    @property
    def done(self) -> trio.Event:
        """Set once its run ended."""
        if self._done is None:
            self._done = trio.Event()
            if self.is_done:
                self._done.set()
        return self._done

    async def wait_ready(self) -> None:
        """Wait until it started, or failed to; then let go of the event made for it."""
        if not self.is_ready:
            await self.ready.wait()
            # most incarnations are waited on once: an idle child keeps no event
            self._ready = None

    def mark_ready(self) -> None:
        """It started, or failed to start."""
        self.is_ready = True
        if self._ready is not None:
            self._ready.set()

    def mark_done(self) -> None:
        """Its run ended."""
        self.is_done = True
        if self._done is not None:
            self._done.set()

    def request_stop(self, deadline: float) -> None:
        """Cancel the child's run; its :func:`shutdown_grace` scopes end at ``deadline``."""
        self.stop_requested = True
        self.grace_deadline = deadline
        for scope in self.grace_scopes or ():
            scope.deadline = deadline
        self.soft_scope.cancel()


_current: contextvars.ContextVar[Incarnation] = contextvars.ContextVar("supervisor_child")


class TaskStatus:
    """What a child's ``task_status`` is: ``started()`` marks it ready."""

    def __init__(self, incarnation: Incarnation) -> None:
        self._incarnation = incarnation

    def started(self, value: Any = None) -> None:
        """Signal that the child is ready; its supervisor goes on with the next one."""
        inc = self._incarnation
        if inc.started:
            msg = f"child {inc.child!r} called task_status.started() twice"
            raise RuntimeError(msg)
        signal_ready(inc, value)


def signal_ready(inc: Incarnation, value: Any = None) -> None:
    """``inc`` started: record it, tell its ``on_ready`` hook, then set ``ready``."""
    inc.started = True
    inc.started_at = trio.current_time()
    inc.value = value
    if inc.on_ready is not None:
        inc.on_ready(inc)
    inc.mark_ready()


#: How a child's code is run: ``(start, args, handshake)``, called as
#: ``start(*args, task_status=...)`` for one that signals ready itself
#: (``handshake``), else as ``start(*args)``, ready as its code begins (no
#: wrapper, nothing made per child).
Code: TypeAlias = "tuple[Callable[..., Awaitable[object]], tuple[Any, ...], bool]"
#: What a runner runs next in the same task: an incarnation and its code, unpacked.
NextRun: TypeAlias = "tuple[Incarnation, Callable[..., Awaitable[object]], tuple[Any, ...], bool]"
#: What a report may hand back: the next run now, or a wait that ends with one (or none).
Following: TypeAlias = "NextRun | Awaitable[NextRun | None] | None"


async def run_incarnation(
    inc: Incarnation,
    function: Callable[..., Awaitable[object]],
    args: tuple[Any, ...],
    handshake: bool,
    report: Callable[[Incarnation], Following],
    classifier: Callable[[BaseException], BaseException] | None = None,
) -> None:
    """Run one incarnation of a child and report how it ended; maybe run the next one.

    The child runs shielded from any cancellation but its own
    ``soft_scope``: only its supervisor stops it, in order, never an outer
    cancel scope all at once. The incarnations restarted in place share
    that scope while it is not cancelled (an incarnation's stop is the
    only cancel): one scope entered per run of them, not per restart.

    Args:
        inc: The incarnation's record; ``ready`` is set once it started or
            failed to (for a plain child, right before its code begins),
            ``done`` once it ended.
        function: Runs the child's code, with ``args``: see :data:`Code`.
        args: Its arguments.
        handshake: Whether it takes a ``task_status`` to signal ready with.
        report: Delivers the ended incarnation to the supervisor: when the
            child ended on its own, or ended at last after its supervisor
            gave up waiting for its stop (``unresponsive``). It returns the
            child's next incarnation when the supervisor restarted it at
            once (``_inplace.restart_in_place``), or a wait for its backoff
            delay that ends with it: that one runs in this same task, as a
            hand-written ``while True`` loop would.
        classifier: The child's classifier (its own, else its tree's), which
            :meth:`ExitReason.of` applies to what it raised.
    """
    # nothing per child is kept but what its records hold: the runner's
    # frame holds the incarnation, its function and arguments, no tuple
    while True:
        scope = inc.soft_scope
        with scope:
            while True:
                after: Following = None
                reported = False
                _current.set(inc)
                error: BaseException | None = None
                try:
                    if handshake:
                        await function(*args, task_status=TaskStatus(inc))
                    else:
                        # ready right before its code runs: it runs on to its
                        # first checkpoint before its supervisor, waiting for
                        # ready, goes on to the next sibling (plain children
                        # start in order too)
                        signal_ready(inc)
                        await function(*args)
                except Exception as exc:  # reported to the supervisor, never lost
                    error = exc
                    if exc.__traceback__ is not None and exc.__traceback__.tb_next:
                        # its traceback begins in the child's own code: this
                        # runner's frame is no part of it (one object less
                        # kept with each exit, and a shorter crash report)
                        exc.__traceback__ = exc.__traceback__.tb_next
                except BaseExceptionGroup as group:
                    # a child stopped while its nursery also failed raises its stop's
                    # Cancelled together with those failures: the failures are its
                    # exit, as when its own scope strips the Cancelled; a group with
                    # a KeyboardInterrupt, or with nothing but Cancelled, goes on up
                    cancelled, rest = group.split(trio.Cancelled)
                    if cancelled is None or not isinstance(rest, Exception):
                        raise
                    error = rest
                finally:
                    # also on KeyboardInterrupt, Cancelled and other
                    # BaseExceptions, which propagate: whoever waits for
                    # this incarnation must not wait forever
                    _ended(inc, error, classifier)
                reported = True
                after = _reported(inc, report)
                if not isinstance(after, tuple) or after[0].soft_scope is not scope:
                    break
                inc, function, args, handshake = after  # restarted in place, in this scope
        if not reported:  # its stop's Cancelled, caught by its scope
            after = _reported(inc, report)
        if after is not None and not isinstance(after, tuple):
            after = await after
        if after is None:
            return
        inc, function, args, handshake = after


def _ended(
    inc: Incarnation,
    error: BaseException | None,
    classifier: Callable[[BaseException], BaseException] | None,
) -> None:
    """Record how ``inc`` ended (its one reason), then set ``ready`` and ``done``."""
    if not inc.started:
        inc.start_error = error or RuntimeError(
            "child exited without calling task_status.started()"
            if not inc.stop_requested
            else "child was stopped before it signalled ready"
        )
    # a child that ends quietly after its stop request exits with `shutdown`
    if inc.stop_requested and error is None:
        inc.reason = STOPPED_EXIT
    else:
        inc.reason = ExitReason.of(error if inc.started else inc.start_error, classifier)
    if not inc.started and inc.on_ready is not None:
        inc.on_ready(inc)
    inc.mark_ready()
    inc.mark_done()


def _reported(inc: Incarnation, report: Callable[[Incarnation], Following]) -> Following:
    """Report an ended ``inc`` if its supervisor is to hear of it: what follows it, if any."""
    if inc.unresponsive or (inc.started and not inc.stop_requested):
        return report(inc)
    return None


@contextmanager
def shutdown_grace() -> Iterator[trio.CancelScope]:
    """A shielded scope for a child's cleanup, bounded by its shutdown grace.

    Use it in a ``finally:`` (or ``except trio.Cancelled:``) block for cleanup
    that must await: the code inside is shielded from the stop request and
    runs until the child's ``shutdown`` grace runs out (at once for
    ``BRUTAL_KILL``, never for ``INFINITY``), then it is cancelled. A scope
    you shield yourself cannot be cut short by anyone, as nothing in trio can.

    Raises:
        RuntimeError: outside a supervised child.
    """
    try:
        inc = _current.get()
    except LookupError:
        msg = "shutdown_grace() is only available inside a supervised child"
        raise RuntimeError(msg) from None
    with trio.CancelScope(shield=True, deadline=inc.grace_deadline) as scope:
        if inc.grace_scopes is None:
            inc.grace_scopes = []
        inc.grace_scopes.append(scope)
        try:
            yield scope
        finally:
            inc.grace_scopes.remove(scope)
            if scope.cancel_called:
                inc.cut_short = True


def current_incarnation() -> Incarnation | None:
    """The incarnation the calling task belongs to, if any."""
    return _current.get(None)


def current_child() -> ChildContext:
    """The supervised child the calling task belongs to: its id, restarts and last exit.

    Raises:
        RuntimeError: outside a supervised child.
    """
    inc = _current.get(None)
    if inc is None:
        msg = "current_child() is only available inside a supervised child"
        raise RuntimeError(msg)
    if inc.context is None:
        inc.context = ChildContext(
            supervisor=inc.supervisor,
            id=inc.child,
            incarnation=inc.number,
            restarts=inc.restarts,
            last_exit=inc.last_exit,
        )
    return inc.context
