"""The supervisor: one loop that owns a tree level and carries out the policy.

Where a crash goes: the child's runner (``_child.run_incarnation``) catches
its exception, makes it the incarnation's one ``ExitReason``
(``ExitReason.of``) and posts ``Exited``. :meth:`Supervisor._on_exit` records
it on the child (``_status.Child.exited``) and asks ``specs.policy.exit_action``
what the exit means; under a ``failure_policy``, ``judge_failure`` decides
a failure by its kind (restart, stay down, escalate; its budget). To
restart, :meth:`Supervisor._restart` asks the intensity window
(``add_restart``'s rule, in O(1)) whether it is allowed, ``plan_restart``
which children stop and start, ``count_failure`` and ``restart_delay`` how
long to wait, then
does exactly that; a start that fails midway leaves what ``failed_start``
says, and is retried through the loop. An exit that is not restarted may end
the supervisor (``auto_shutdown_due``). Every decision is one pure function of
``specs.policy``; a child's status changes only through ``_status.Child``'s
transitions. Everything that changes the tree (exits, API calls, timers)
passes through :meth:`Supervisor._serve`, one message at a time, in order.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import random
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, suppress
from typing import Any, Final, TypeAlias

import attrs
import trio

from specs import (
    BRUTAL_KILL,
    NEVER,
    ONE_FOR_ONE,
    TEMPORARY,
    ChildSpec,
    DynamicSupervisorSpec,
    SpecError,
    Strategy,
    SupervisorSpec,
)
from specs._policy import RestartWindow
from specs._spec import accepts_task_status
from specs.policy import (
    ExitAction,
    FailureVerdict,
    auto_shutdown_due,
    exit_action,
    failed_start,
    healthy_after,
    judge_failure,
    plan_restart,
    restart_delay,
)

from ._child import (
    Exited,
    Following,
    Incarnation,
    NextRun,
    TaskStatus,
    current_incarnation,
    run_incarnation,
    shutdown_grace,
)
from ._events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildTerminated,
    ContainedHook,
    Event,
    GaveUp,
    Hook,
    RestartScheduled,
    ShutdownTimedOut,
    StartFailed,
    contain,
)
from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ChildUnresponsive,
    FailedToStartChild,
    MaxChildrenReached,
    MaxIntensityReached,
    SupervisorNotRunning,
)
from ._reasons import ContainedClassifier, ExitReason, release_frames
from ._snapshot import (
    ChildCounts,
    ChildInfo,
    SupervisorSnapshot,
    count_children,
    snapshot,
    which_children,
)
from ._status import Child, Children, Restarting
from ._stream import EventStream

#: Seconds a stopped child's task may take to end after its grace is spent
#: (its cut-short cleanup unwinding), before it is unresponsive.
KILL_ALLOWANCE: Final = 1.0


@attrs.frozen
class _TryAgain:
    """Retry a restart whose start failed (OTP's ``try_again_restart`` cast)."""

    child: str
    pending: Restarting


@attrs.frozen
class _RestartDue:
    """A backoff delay ran out: start these children, if still pending on it."""

    pending: Restarting
    children: tuple[str, ...]


@attrs.define(eq=False)
class _Call:
    """An API request, carried out inside the loop."""

    op: Callable[[], Awaitable[Any]]
    done: trio.Event = attrs.Factory(trio.Event)
    result: Any = None
    error: BaseException | None = None


@attrs.frozen
class _Stop:
    """Stop the supervisor: ordered shutdown, then exit cleanly."""


_Message: TypeAlias = Exited | _TryAgain | _RestartDue | _Call | _Stop

#: The classifier a subtree inherits: set by its parent right before the
#: subtree's supervisor is built, which reads and clears it (so nothing
#: started further down inherits it by accident).
_inherited: contextvars.ContextVar[ContainedClassifier | None] = contextvars.ContextVar(
    "supervisor_inherited_classifier", default=None
)


def _shutdown_shield() -> AbstractContextManager[trio.CancelScope]:
    # A nested supervisor gets its parent's shutdown grace for stopping its
    # own children; a root one finishes its ordered shutdown whatever
    # cancelled it.
    if current_incarnation() is not None:
        return shutdown_grace()
    return trio.CancelScope(shield=True)


#: Whether a start function takes ``task_status``, per function: a start's
#: signature is read once, not per child (10,000 children of one function).
_HANDSHAKES: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def _takes_task_status(start: Callable[..., Any]) -> bool:
    try:
        return _HANDSHAKES[start]
    except KeyError:
        pass
    except TypeError:  # unhashable
        return accepts_task_status(start)
    handshake = accepts_task_status(start)
    with suppress(TypeError):  # not weakly referenceable: read each time
        _HANDSHAKES[start] = handshake
    return handshake


def _grace(child: Child) -> float:
    shutdown = child.spec.shutdown
    return 0.0 if shutdown is BRUTAL_KILL else float(shutdown)


class Supervisor:
    """The runtime of one supervisor (static or dynamic). Not public: see the handles."""

    def __init__(
        self,
        spec: SupervisorSpec | DynamicSupervisorSpec,
        *,
        name: str,
        hooks: tuple[Hook, ...],
        history: int,
        rng: random.Random | None,
        parent: Supervisor | None = None,
        path: str | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        # a supervisor in a tree (a subtree, or one opened inside a child) is
        # the tree's: its events reach the tree's hooks and subscribers too
        self.parent = parent
        self.path = path or name
        inherited: tuple[ContainedHook, ...] = () if parent is None else parent.hooks
        self.hooks: tuple[ContainedHook, ...] = contain(hooks, inherited)
        self.stream: EventStream = EventStream(name, None if parent is None else parent.stream)
        self.history: deque[Event] = deque(maxlen=history)
        self.rng = rng
        self.children = Children()
        self.restarts = RestartWindow()  # the intensity window, oldest first
        self.error: BaseException | None = None
        self.running = False
        self.finished = trio.Event()
        self.handle: Any = None
        # the tree's classifier: its spec's, else the one its parent passed down
        own = spec.classifier
        self.classifier = ContainedClassifier(own) if own is not None else _inherited.get()
        _inherited.set(None)
        self._child_classifiers: dict[int, ContainedClassifier] = {}
        self._stopping = False
        self._send, self._receive = trio.open_memory_channel[_Message](math.inf)
        self._nursery: trio.Nursery | None = None
        # One_for_one: a runner may restart its own child at its exit, in its
        # own task (``_restart_in_place``), but only while the loop waits for
        # a message with none queued; ``_inflight`` is the one incarnation so
        # started that has not signalled ready yet.
        self._simple = self.strategy is ONE_FOR_ONE
        self._in_place = False
        self._inflight: Incarnation | None = None
        self._dynamic_ids = itertools.count(1)
        # every dynamic child shares the template: inspect its signature once
        self._template_handshake = isinstance(spec, DynamicSupervisorSpec) and (
            spec.template.is_subtree or _takes_task_status(spec.template.start)  # type: ignore[arg-type]
        )

    @property
    def dynamic(self) -> bool:
        """Whether this is a dynamic supervisor (OTP's simple_one_for_one)."""
        return isinstance(self.spec, DynamicSupervisorSpec)

    @property
    def strategy(self) -> Strategy:
        """The restart strategy; a dynamic supervisor's is one_for_one."""
        return self.spec.strategy if isinstance(self.spec, SupervisorSpec) else ONE_FOR_ONE

    # ------------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        """Record an event and hand it to every hook (each contained: see ``ContainedHook``)."""
        self.history.append(event)
        for hook in self.hooks:
            hook(event)
        self.stream.publish(event)

    # --------------------------------------------------------------- lifecycle

    async def run(self, nursery: trio.Nursery, task_status: Any) -> None:
        """Start the children in order, signal ready, serve until stopped."""
        self._nursery = nursery
        try:
            if isinstance(self.spec, SupervisorSpec):
                for spec in self.spec.children:
                    self.children[spec.id] = self._record(spec, spec.id, spec.args)
                for child in list(self.children.values()):
                    error = await self._start(child)
                    if error is not None:
                        failure = FailedToStartChild(self.name, child.id, error)
                        failure.__cause__ = error
                        self.error = failure
                        return
            self.running = True
            task_status.started(self.handle)
            await self._serve()
        finally:
            self.running = False
            with _shutdown_shield():
                await self._stop_all()
            self._close()
            # the children are stopped: what is left are backoff timers, and
            # the tasks of unresponsive children, which trio cannot end
            nursery.cancel_scope.cancel()
            try:
                with _shutdown_shield():
                    await self._record_late_ends()
            finally:
                self.stream.close()

    async def _record_late_ends(self) -> None:
        """After the loop: wait for unresponsive children's tasks, and record each end."""
        for child in list(self.children.values()):
            inc = child.stuck
            if inc is not None:
                await inc.done.wait()
                self._ended_late(child, inc)

    async def _serve(self) -> None:
        while self.error is None and not self._stopping:
            try:
                message = self._receive.receive_nowait()
            except trio.WouldBlock:
                self._in_place = self._simple
                try:
                    message = await self._receive.receive()
                finally:
                    self._in_place = False
            while self._inflight is not None and not self._inflight.is_ready:
                # a child restarted in place has not signalled ready: the loop
                # would have waited for it before taking this message
                await self._inflight.ready.wait()
            await self._dispatch(message)

    async def _dispatch(self, message: _Message) -> None:
        match message:
            case Exited():
                await self._on_exit(message)
            case _TryAgain(child=child_id, pending=pending):
                child = self.children.get(child_id)
                if child is not None and child.status is pending:
                    await self._restart(child)
            case _RestartDue(pending=pending, children=ids):
                due = [c for c in ids if (ch := self.children.get(c)) and ch.status is pending]
                await self._start_group(due)
            case _Call():
                try:
                    message.result = await message.op()
                except Exception as error:
                    message.error = error
                finally:
                    message.done.set()
            case _Stop():
                self._stopping = True

    def _close(self) -> None:
        self._send.close()
        # fail API calls that arrived too late, so no caller waits forever
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(message, _Call):
                message.error = SupervisorNotRunning(self.name)
                message.done.set()
        self.finished.set()

    def post(self, message: _Message) -> None:
        """Queue a message for the loop; dropped once the supervisor has stopped."""
        self._in_place = False  # it comes before whatever happens next
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait(message)

    async def call(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``op`` inside the loop, in order with everything else, and return its result."""
        if self.finished.is_set():
            raise SupervisorNotRunning(self.name)
        request = _Call(op)
        self.post(request)
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def request_stop(self) -> None:
        """Ask for an ordered shutdown (returns at once)."""
        self.post(_Stop())

    # ------------------------------------------------------------ child runs

    def _record(self, spec: ChildSpec, child_id: str, args: tuple[Any, ...]) -> Child:
        if self.dynamic:
            handshake = self._template_handshake
        else:
            # a subtree signals ready itself, once all its children are up
            handshake = spec.is_subtree or _takes_task_status(spec.start)  # type: ignore[arg-type]
        return Child(spec=spec, id=child_id, args=args, handshake=handshake)

    def _classifier(self, spec: ChildSpec) -> ContainedClassifier | None:
        """A child's classifier: its own (one wrapper per spec), else the tree's."""
        own = spec.classifier
        if own is None:
            return self.classifier
        contained = self._child_classifiers.get(id(own))
        if contained is None:  # the wrapper keeps ``own`` alive: its id stays its own
            contained = self._child_classifiers[id(own)] = ContainedClassifier(own)
        return contained

    def _runner_call(self, child: Child) -> Callable[[TaskStatus], Awaitable[object]]:
        """What runs the child's code: made once per child, the same for each incarnation."""
        if child.runner is None:
            child.runner = self._make_runner(child)
        return child.runner

    def _make_runner(self, child: Child) -> Callable[[TaskStatus], Awaitable[object]]:
        start = child.spec.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            from ._api import run_supervisor  # a subtree is a supervisor run as a child

            subtree: SupervisorSpec | DynamicSupervisorSpec = start
            name = start.name or f"{self.name}/{child.id}"
            inherited = self._classifier(child.spec)

            async def run_subtree(status: TaskStatus) -> None:
                _inherited.set(inherited)  # unless the subtree's spec sets its own
                await run_supervisor(
                    subtree,
                    name=name,
                    hooks=self.hooks,
                    history=self.history.maxlen or 0,
                    rng=self.rng,
                    task_status=status,
                )

            return run_subtree
        function: Callable[..., Awaitable[object]] = start
        args = child.args
        if child.handshake:
            return lambda status: function(*args, task_status=status)

        async def plain(status: TaskStatus) -> object:
            # ready right before its code runs: it runs on to its first
            # checkpoint before its supervisor, waiting for ready, goes on to
            # the next sibling, so plain children start in order too
            status.started()
            return await function(*args)

        return plain

    async def _start(self, child: Child, *, restarted: bool = False) -> BaseException | None:
        """Start one incarnation and wait until it is ready; return its start error, if any."""
        assert self._nursery is not None
        inc = child.begin(self.name, restarted=restarted)
        inc.owner = self
        self._nursery.start_soon(
            run_incarnation,
            inc,
            self._runner_call(child),
            self._report,
            self._classifier(child.spec),
            name=f"{self.name}/{child.id}#{inc.number}",
        )
        await inc.ready.wait()
        return self._started(child, inc, restarted=restarted)

    def _started(self, child: Child, inc: Incarnation, *, restarted: bool) -> BaseException | None:
        """``inc`` signalled ready, or failed to start: record which; return its start error."""
        now = trio.current_time()
        if inc.start_error is not None:
            assert inc.reason is not None  # set before ready
            release_frames(inc.start_error)
            child.failed_to_start(inc.reason, now)
            self.emit(
                StartFailed(
                    supervisor=self.name,
                    path=self.path,
                    child=child.id,
                    error=inc.start_error,
                    time=now,
                )
            )
            return inc.start_error
        child.ready(inc, now, restarted=restarted)
        started = ChildRestarted if restarted else ChildStarted
        self.emit(
            started(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                incarnation=inc.number,
                time=now,
            )
        )
        return None

    async def _terminate(self, child: Child) -> None:
        """Stop a running child: cancel it, give it its grace, then cut its cleanup short."""
        inc = child.inc
        if inc is None:
            return
        grace = _grace(child)
        inc.request_stop(trio.current_time() + grace)
        await self._await_stopped(child, inc, grace)

    async def _await_stopped(self, child: Child, inc: Incarnation, grace: float) -> None:
        """Wait for a stopped child to end: its grace, then ``KILL_ALLOWANCE`` at most.

        A child that still runs then caught its cancellation (or shields
        itself): trio cannot kill it, so the loop stops waiting, reports it
        and goes on; it is :class:`Unresponsive` until its task ends
        (``_ended_late``). ``INFINITY`` waits forever, as OTP's ``infinity``.
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
            self._timed_out(child, grace, unresponsive=True)
            return
        if grace > 0 and (overran or inc.cut_short):
            self._timed_out(child, grace, unresponsive=False)
        self._stopped(child, inc)

    def _timed_out(self, child: Child, grace: float, *, unresponsive: bool) -> None:
        now = trio.current_time()
        self.emit(
            ShutdownTimedOut(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                grace=grace,
                unresponsive=unresponsive,
                time=now,
            )
        )

    def _stopped(self, child: Child, inc: Incarnation) -> None:
        child.terminated()
        assert inc.reason is not None
        release_frames(inc.reason.exception)
        self.emit(
            ChildTerminated(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                incarnation=inc.number,
                reason=inc.reason,
                time=trio.current_time(),
            )
        )

    async def _stop_all(self) -> None:
        """Stop every child: in reverse start order, or all at once if dynamic (as OTP)."""
        for child in self.children.values():
            child.cancel_restart()
        if not self.dynamic:
            for child in reversed(list(self.children.values())):
                await self._terminate(child)
            return
        live = [(c, inc) for c in self.children.values() if (inc := c.inc) is not None]
        now = trio.current_time()
        for child, inc in live:
            inc.request_stop(now + _grace(child))
        for child, inc in live:
            await self._await_stopped(child, inc, _grace(child))

    # ------------------------------------------------------------ the policy

    async def _on_exit(self, message: Exited) -> None:
        """A child's run ended on its own: keep, remove or restart it, per ``exit_action``."""
        child = self.children.get(message.child)
        stuck = None if child is None else child.stuck
        if child is not None and stuck is not None and stuck.number == message.incarnation:
            self._ended_late(child, stuck)
            return
        inc = None if child is None else child.inc
        if child is None or inc is None or inc.number != message.incarnation:
            return  # already stopped by us; its exit was expected
        now = trio.current_time()
        action, verdict = self._exited(child, inc, message.reason, now)
        if action is ExitAction.RESTART:
            await self._restart(child, verdict)
            return
        if action is ExitAction.ESCALATE:
            self._give_up(child, now, escalated=True)
            return
        if action is ExitAction.REMOVE:
            del self.children[child.id]
        if isinstance(self.spec, SupervisorSpec) and auto_shutdown_due(
            self.spec.auto_shutdown,
            significant=child.spec.significant,
            siblings=(c.view() for c in self.children.values() if c is not child),
        ):
            self._stopping = True

    def _exited(
        self, child: Child, inc: Incarnation, reason: ExitReason, now: float
    ) -> tuple[ExitAction, FailureVerdict | None]:
        """Record a child's own exit and decide what it means (``exit_action``, a verdict)."""
        release_frames(reason.exception)
        child.exited(inc, reason, now)
        action = exit_action(child.spec.restart, reason.kind, dynamic=self.dynamic)
        policy = self.spec.failure_policy
        verdict = None
        if policy is not None and reason.failure_kind is not None:
            assert child.stats is not None  # made by child.exited
            verdict = judge_failure(
                policy,
                reason.failure_kind,
                action,
                child.stats.budgets,
                now=now,
                last_run=child.last_run,
                backoff=self.spec.backoff,
                period=self.spec.period,
            )
            child.stats.budgets = verdict.budgets
            action = verdict.action
        if child.stats is not None:
            child.stats.acted(
                action, healthy_after=healthy_after(policy, self.spec.backoff, self.spec.period)
            )
        self.emit(
            ChildExited(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                incarnation=inc.number,
                reason=reason,
                action=action,
                time=now,
            )
        )
        return action, verdict

    def _report(self, message: Exited) -> Following:
        """A runner's report of its child's exit: taken in place if it may be, else posted."""
        if self._takes_in_place(message):
            return self._restart_in_place(message)
        self.post(message)
        return None

    def _takes_in_place(self, message: Exited) -> bool:
        """Whether a runner may carry out its child's exit itself (``_restart_in_place``).

        Only when the loop is waiting with nothing queued (so no API call,
        group restart or earlier exit is mid-flight, and none is reordered:
        each posted message clears ``_in_place``) and no child restarted in
        place is still starting; only under one_for_one (``_simple``); only
        for a plain child (no ``task_status``: it is ready as its code
        begins, so hooks never run inside a child's ``started()``); without
        a ``failure_policy`` (its verdict may turn a restart into something
        else); and only for an exit that is restarted, with intensity
        allowing it. Pure checks: nothing is changed.
        """
        if not self._in_place or self._inflight is not None or self.spec.failure_policy:
            return False
        child = self.children.get(message.child)
        inc = None if child is None else child.inc
        if child is None or inc is None or inc.number != message.incarnation or child.handshake:
            return False
        action = exit_action(child.spec.restart, message.reason.kind, dynamic=self.dynamic)
        return action is ExitAction.RESTART and self.restarts.allows(
            trio.current_time(), intensity=self.spec.intensity, period=self.spec.period
        )

    def _restart_in_place(self, message: Exited) -> Following:
        """What the loop would do with ``message`` now (``_takes_in_place`` said yes), in place.

        The same pure decisions, transitions and events, in the same order
        as ``_on_exit``, ``_restart``, ``_start_group`` and ``_start`` for
        one child: the next incarnation is returned, to run in the runner's
        own task, as a hand-written ``while True`` loop would; after a
        backoff delay, the runner itself is the restart's timer
        (``_wait_due``), and starts it in place too when it may.
        """
        child = self.children[message.child]
        inc = child.inc
        assert inc is not None
        reason = message.reason
        now = trio.current_time()
        action, _ = self._exited(child, inc, reason, now)
        assert action is ExitAction.RESTART  # as _takes_in_place found
        self.restarts.add(now, intensity=self.spec.intensity, period=self.spec.period)
        failures = child.count_failure(self.spec.backoff)
        delay = restart_delay(self.spec.backoff, failures, hint=reason.restart_delay, rng=self.rng)
        if delay > 0:
            due = self._schedule(child, (child.id,), delay, now, failures, timer=False)
            return self._wait_due(due)
        return self._begin_in_place(child)

    async def _wait_due(self, due: _RestartDue) -> NextRun | None:
        """A runner waits out its child's backoff delay: the restart's timer, in its task."""
        assert due.pending.at is not None
        await trio.sleep_until(due.pending.at)
        if not self._due_in_place(due):
            self.post(due)
            return None
        return self._begin_in_place(self.children[due.children[0]])

    def _begin_in_place(self, child: Child) -> NextRun:
        following = child.begin(self.name, restarted=True)
        following.on_ready = self._ready_in_place
        self._inflight = following
        return following, self._runner_call(child)

    def _ready_in_place(self, inc: Incarnation) -> None:
        """A child restarted in place signalled ready or failed to: what the loop does then."""
        self._inflight = None
        child = self.children.get(inc.child)
        if child is None or child.inc is not inc or inc.stop_requested:
            return  # stopped meanwhile, by the supervisor's end: its stop records it
        if self._started(child, inc, restarted=True) is not None:
            self._retry_start(child, (child.id,))

    def _ended_late(self, child: Child, inc: Incarnation) -> None:
        """An unresponsive child's task ended at last: its stop is complete."""
        self._stopped(child, inc)
        # what its stop would have forgotten waited until now (never two
        # records of one id, never a lost live task)
        if self.dynamic or child.spec.restart is TEMPORARY:
            del self.children[child.id]

    async def _restart(self, child: Child, verdict: FailureVerdict | None = None) -> None:
        """OTP's ``restart/2``: count intensity, plan by strategy, stop, then start.

        A failure policy's ``verdict`` paces the restart by the failure's kind.
        """
        now = trio.current_time()
        allowed = self.restarts.add(now, intensity=self.spec.intensity, period=self.spec.period)
        if not allowed:
            self._give_up(child, now)
            return
        failures = child.count_failure(self.spec.backoff)
        backoff = self.spec.backoff
        if verdict is not None:
            failures, backoff = verdict.failures, verdict.backoff
        strategy = self.strategy
        views = (
            ()
            if strategy is ONE_FOR_ONE
            # rest_for_one looks only at the failed child and those after it
            else [c.view() for c in self.children.after(child.id)]
            if strategy is Strategy.REST_FOR_ONE
            else [c.view() for c in self.children.values()]
        )
        plan = plan_restart(strategy, views, child.id)
        for child_id in plan.stop:
            await self._terminate(self.children[child_id])
        for child_id in plan.remove:
            if self.children[child_id].stuck is None:  # else forgotten when it ends
                del self.children[child_id]
        # an unresponsive child is not started while its old incarnation lives
        start = [c for c in plan.start if self.children[c].stuck is None]
        hint = None if child.last_exit is None else child.last_exit.restart_delay
        delay = restart_delay(backoff, failures, hint=hint, rng=self.rng)
        if delay > 0:
            self._schedule(child, start, delay, now, failures)
            return
        await self._start_group(start)

    def _schedule(
        self,
        child: Child,
        ids: Iterable[str],
        delay: float,
        now: float,
        failures: int,
        *,
        timer: bool = True,
    ) -> _RestartDue:
        """Make ``ids`` restarting until ``now + delay``; a timer posts what falls due then.

        Without ``timer`` the caller waits itself (``_wait_due``).
        """
        assert self._nursery is not None
        pending = Restarting(at=now + delay)
        ids = tuple(ids)
        for child_id in ids:
            self.children[child_id].schedule(pending)
        self.emit(
            RestartScheduled(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                delay=delay,
                failures=failures,
                time=now,
            )
        )
        due = _RestartDue(pending, ids)
        if timer:
            self._nursery.start_soon(self._timer, due)
        return due

    async def _timer(self, due: _RestartDue) -> None:
        # never cancelled one by one: a restart no longer pending finds a
        # different status; the supervisor's end cancels what is left
        following = await self._wait_due(due)
        if following is not None:
            # a timer falling due never waits behind a queue of exits: it
            # runs the child itself, as the loop would have started it
            child = self.children[due.children[0]]
            await run_incarnation(*following, self._report, self._classifier(child.spec))

    def _due_in_place(self, message: _RestartDue) -> bool:
        """Whether a timer may start its one plain child itself (see ``_takes_in_place``)."""
        if not self._in_place or self._inflight is not None or len(message.children) != 1:
            return False
        child = self.children.get(message.children[0])
        return child is not None and child.status is message.pending and not child.handshake

    async def _start_group(self, ids: Iterable[str]) -> None:
        """Start children in order; on a failed start, stop there and retry through the loop."""
        ids = tuple(ids)
        for child_id in ids:
            child = self.children.get(child_id)
            if child is None or child.inc is not None:
                continue
            if await self._start(child, restarted=True) is None:
                continue
            self._retry_start(child, ids)
            return

    def _retry_start(self, child: Child, ids: tuple[str, ...]) -> None:
        """``child``, one of ``ids``, failed to start: leave what ``failed_start`` says, retry."""
        left = failed_start(ids, child.id)
        for later_id in left.stopped:
            if (later := self.children.get(later_id)) is not None:
                later.cancel_restart()
        retry = Restarting()
        child.schedule(retry)
        self.post(_TryAgain(left.retry, retry))

    def _give_up(self, child: Child, now: float, *, escalated: bool = False) -> None:
        self.emit(
            GaveUp(
                supervisor=self.name,
                path=self.path,
                child=child.id,
                reason=child.last_exit,
                intensity=self.spec.intensity,
                period=self.spec.period,
                time=now,
            )
        )
        child.cancel_restart()
        if child.spec.restart is TEMPORARY:
            del self.children[child.id]
        self.error = MaxIntensityReached(self.name, child.id, child.last_exit, escalated=escalated)

    # ------------------------------------------------------------------- API

    def _get(self, child_id: str) -> Child:
        child = self.children.get(child_id)
        if child is None:
            raise ChildNotFound(self.name, child_id)
        return child

    def _get_stopped(self, child_id: str) -> Child:
        child = self._get(child_id)
        if child.inc is not None:
            raise ChildRunning(self.name, child_id)
        if child.stuck is not None:
            raise ChildUnresponsive(self.name, child_id)
        if isinstance(child.status, Restarting):
            raise ChildRestarting(self.name, child_id)
        return child

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child at the end of the start order and start it."""
        if not isinstance(spec, ChildSpec):
            msg = f"start_child takes a ChildSpec (got {spec!r})"
            raise TypeError(msg)
        assert isinstance(self.spec, SupervisorSpec)
        if spec.significant and self.spec.auto_shutdown is NEVER:
            raise SpecError(
                spec.id, "significant", f"a significant child needs auto_shutdown in {self.name}"
            )

        async def op() -> Any:
            existing = self.children.get(spec.id)
            if existing is not None:
                if existing.inc is not None:
                    raise ChildAlreadyStarted(self.name, spec.id)
                raise ChildAlreadyPresent(self.name, spec.id)
            child = self._record(spec, spec.id, spec.args)
            self.children[spec.id] = child
            return await self._start_or_raise(child, forget_on_failure=True)

        return await self.call(op)

    async def start_dynamic_child(self, extra_args: tuple[Any, ...]) -> str:
        """Start one more child of a dynamic supervisor's template; return its id."""
        assert isinstance(self.spec, DynamicSupervisorSpec)
        template = self.spec.template
        limit = self.spec.max_children

        async def op() -> str:
            if limit is not None and len(self.children) >= limit:
                raise MaxChildrenReached(self.name, limit)
            child_id = f"{template.id}-{next(self._dynamic_ids)}"
            child = self._record(template, child_id, template.args + extra_args)
            self.children[child_id] = child
            await self._start_or_raise(child, forget_on_failure=True)
            return child_id

        result: str = await self.call(op)
        return result

    async def _start_or_raise(self, child: Child, *, forget_on_failure: bool) -> Any:
        error = await self._start(child)
        if error is not None:
            if forget_on_failure:
                del self.children[child.id]
            raise FailedToStartChild(self.name, child.id, error) from error
        assert child.inc is not None
        return child.inc.value

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (and any pending restart of it); a temporary or dynamic one is forgotten."""

        async def op() -> None:
            child = self._get(child_id)
            child.cancel_restart()
            await self._terminate(child)
            # an unresponsive one is kept until it ends (``_ended_late``)
            if (self.dynamic or child.spec.restart is TEMPORARY) and child.stuck is None:
                del self.children[child_id]

        await self.call(op)

    async def restart_child(self, child_id: str) -> Any:
        """Start a stopped child again; it does not count toward intensity."""

        async def op() -> Any:
            child = self._get_stopped(child_id)
            return await self._start_or_raise(child, forget_on_failure=False)

        return await self.call(op)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec."""

        async def op() -> None:
            del self.children[self._get_stopped(child_id).id]

        await self.call(op)

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order."""
        return which_children(self)

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children``."""
        return count_children(self)

    def snapshot(self) -> SupervisorSnapshot:
        """A frozen, JSON-serialisable picture of this supervisor and its subtrees."""
        return snapshot(self)
