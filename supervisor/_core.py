"""The supervisor: one loop that owns a tree level and carries out the policy.

Where a crash goes: the child's runner (``_child.run_incarnation``) catches
its exception, makes it the incarnation's one ``ExitReason``
(``ExitReason.of``) and reports ``Exited`` (``_inplace.report``, which
posts it to the loop unless the loop is idle). :meth:`Supervisor._on_exit`
records it on the child (``_status.Child.exited``) and asks
``specs.policy.exit_action`` what the exit means; under a ``failure_policy``,
``judge_failure`` decides a failure by its kind (restart, stay down,
escalate; its budget). To restart,
:meth:`Supervisor._restart` asks the intensity window (``add_restart``'s
rule, in O(1)) whether it is allowed, ``plan_restart`` which children stop
and start, ``count_failure`` and ``restart_delay`` how long to wait, then
does exactly that: it stops children through ``_shutdown.terminate`` and
starts them with :meth:`Supervisor._start_group`; a start that fails midway
leaves what ``failed_start`` says, and is retried through the loop. An exit
that is not restarted may end the supervisor (``auto_shutdown_due``). Every
decision is one pure function of ``specs.policy``; a child's status changes
only through ``_status.Child``'s transitions. Everything that changes the
tree (exits, API calls, timers) passes through :meth:`Supervisor._serve`,
one message at a time, in order.

Beside this module: ``_shutdown`` stops children (the ordered shutdown, a
child that will not stop); ``_inplace`` restarts a one_for_one child
in its runner's own task when the loop is idle, with the same decisions in
the same order; ``_operations`` holds the API calls the handles make.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
import random
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeAlias

import attrs
import trio

from specs import ONE_FOR_ONE, TEMPORARY, ChildSpec, DynamicSupervisorSpec, Strategy, SupervisorSpec
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

from . import _inplace, _shutdown
from ._child import (
    Code,
    Exited,
    Following,
    Incarnation,
    TaskStatus,
    current_incarnation,
    run_incarnation,
    shutdown_grace,
)
from ._events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ContainedHook,
    Event,
    GaveUp,
    Hook,
    RestartScheduled,
    StartFailed,
    Unbuilt,
    build,
    contain,
)
from ._exceptions import FailedToStartChild, MaxIntensityReached, SupervisorNotRunning
from ._reasons import ContainedClassifier, ExitReason, release_frames
from ._status import Child, Children, Restarting
from ._stream import EventStream


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


@attrs.frozen
class _Wake:
    """A child restarted in place signalled ready, or failed to: the loop records it."""


_WAKE = _Wake()

_Message: TypeAlias = Exited | _TryAgain | _RestartDue | _Call | _Stop | _Wake

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
        #: Whether this is a dynamic supervisor (OTP's simple_one_for_one).
        self.dynamic = isinstance(spec, DynamicSupervisorSpec)
        # a supervisor in a tree (a subtree, or one opened inside a child) is
        # the tree's: its events reach the tree's hooks and subscribers too
        self.parent = parent
        self.path = path or name
        inherited: tuple[ContainedHook, ...] = () if parent is None else parent.hooks
        self.hooks: tuple[ContainedHook, ...] = contain(hooks, inherited)
        self.stream: EventStream = EventStream(name, None if parent is None else parent.stream)
        # the recent events; those no hook or subscriber saw are kept unbuilt
        # (``note``), and built only if the history is read (``recent``)
        self.history: deque[Event | Unbuilt] = deque(maxlen=history)
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
        # A runner may restart its own child at its exit, in its own task
        # (``_inplace.restart_in_place``), if its strategy restarts it alone,
        # but only while the loop waits for a message with none queued;
        # ``_inflight`` is the one incarnation so started whose start the
        # loop has not recorded yet.
        self._in_place = False
        self._inflight: Incarnation | None = None
        # what every runner reports to, and an in-place start's ready hooks
        # (a plain child's; one with a task_status wakes the loop): bound
        # once, so a restart pays for no bound method
        self._report: Callable[[Incarnation], Following] = functools.partial(_inplace.report, self)
        self._ready_in_place: Callable[[Incarnation], None] = functools.partial(
            _inplace.ready_in_place, self
        )
        self._wake: Callable[[Incarnation], None] = self._post_wake
        self._wake_queued = False  # a wake-up is in the queue, not yet taken
        self._dynamic_ids = itertools.count(1)
        # every dynamic child shares the template: inspect its signature once
        self._template_handshake = isinstance(spec, DynamicSupervisorSpec) and (
            spec.template.is_subtree or _takes_task_status(spec.template.start)  # type: ignore[arg-type]
        )

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

    def watched(self) -> bool:
        """Whether an event now reaches a hook or a subscriber (here or up the tree)."""
        if self.hooks:
            return True
        stream: EventStream | None = self.stream
        while stream is not None:
            if stream.subscriptions:
                return True
            stream = stream.parent
        return False

    def note(self, unbuilt: Unbuilt) -> None:
        """Record an event nothing watches (``watched`` is false): in the history, unbuilt.

        A restart's events cost a tuple each, not a frozen record, when the
        supervisor runs without hooks or subscribers: most are never read.
        """
        if self.history.maxlen:
            self.history.append(unbuilt)

    def recent(self) -> tuple[Event, ...]:
        """The history, oldest first, each event built once (the next read returns the same)."""
        history = self.history
        if any(type(item) is tuple for item in history):
            built = [
                build(self.name, self.path, item) if type(item) is tuple else item
                for item in history
            ]
            history.clear()
            history.extend(built)
        return tuple(history)  # type: ignore[arg-type]  # every item is built now

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
                await _shutdown.stop_all(self)
            self._close()
            # the children are stopped: what is left are backoff timers, and
            # the tasks of unresponsive children, which trio cannot end
            nursery.cancel_scope.cancel()
            try:
                with _shutdown_shield():
                    await _shutdown.record_late_ends(self)
            finally:
                self.stream.close()

    async def _serve(self) -> None:
        while self.error is None and not self._stopping:
            try:
                message = self._receive.receive_nowait()
            except trio.WouldBlock:
                self._in_place = True
                try:
                    message = await self._receive.receive()
                finally:
                    self._in_place = False
            if message is _WAKE:
                self._wake_queued = False
            if self._inflight is not None:
                # a child restarted in place is starting: the loop would have
                # waited for it, and recorded its start, before this message
                if not self._inflight.is_ready:
                    await self._inflight.ready.wait()
                _inplace.settle(self)
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
            case _Wake():
                pass  # what it woke the loop for is done: see _serve

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

    def _post_wake(self, _: Incarnation) -> None:
        # a wake-up orders nothing (whoever records that start first, the
        # loop or a runner in ``_inplace.catch_up``, does it before anything
        # else): unlike ``post`` it leaves runners free to go on in place.
        # One queued is enough: the loop records whichever start is in
        # flight when it takes any message (``_serve``), so a mass restart
        # of task_status children queues one wake-up, not one per child
        if self._wake_queued:
            return
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait(_WAKE)
            self._wake_queued = True

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

    def _runner_call(self, child: Child) -> Code:
        """How the child's code runs: the same for each incarnation (see ``_child.Code``)."""
        start = child.spec.start
        if not isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            return start, child.args, child.handshake
        if child.runner is None:
            child.runner = self._subtree_runner(child, start)
        return child.runner, (), True

    def _subtree_runner(
        self, child: Child, subtree: SupervisorSpec | DynamicSupervisorSpec
    ) -> Callable[..., Awaitable[object]]:
        from ._api import run_supervisor  # a subtree is a supervisor run as a child

        name = subtree.name or f"{self.name}/{child.id}"
        inherited = self._classifier(child.spec)

        async def run_subtree(*, task_status: TaskStatus) -> None:
            _inherited.set(inherited)  # unless the subtree's spec sets its own
            await run_supervisor(
                subtree,
                name=name,
                hooks=self.hooks,
                history=self.history.maxlen or 0,
                rng=self.rng,
                task_status=task_status,
            )

        return run_subtree

    async def _start(self, child: Child, *, restarted: bool = False) -> BaseException | None:
        """Start one incarnation and wait until it is ready; return its start error, if any."""
        assert self._nursery is not None
        inc = child.begin(self.name, restarted=restarted)
        inc.owner = self
        self._nursery.start_soon(
            run_incarnation,
            inc,
            *self._runner_call(child),
            self._report,
            self._classifier(child.spec),
            name=f"{self.name}/{child.id}#{inc.number}",
        )
        await inc.wait_ready()
        return self._started(child, inc, trio.current_time(), restarted=restarted)

    def _started(
        self, child: Child, inc: Incarnation, now: float, *, restarted: bool
    ) -> BaseException | None:
        """``inc`` signalled ready, or failed to start: record which; return its start error."""
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
        if not self.watched():
            self.note((started, child.id, inc.number, now))
            return None
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

    # ------------------------------------------------------------ the policy

    async def _on_exit(self, message: Exited) -> None:
        """A child's run ended on its own: keep, remove or restart it, per ``exit_action``."""
        child = self.children.get(message.child)
        stuck = None if child is None else child.stuck
        if child is not None and stuck is not None and stuck.number == message.incarnation:
            _shutdown.ended_late(self, child, stuck)
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
        if not self.watched():
            self.note((ChildExited, child.id, inc.number, reason, action, now))
            return action, verdict
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
            await _shutdown.terminate(self, self.children[child_id])
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
    ) -> Restarting:
        """Make ``ids`` restarting until ``now + delay``; a timer posts what falls due then.

        Without ``timer`` the caller waits itself (``_inplace.wait_due``).
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
        if timer:
            self._nursery.start_soon(self._timer, _RestartDue(pending, ids))
        return pending

    def post_due(self, pending: Restarting, ids: tuple[str, ...]) -> None:
        """A backoff delay ran out: the loop starts ``ids`` if still pending on ``pending``."""
        self.post(_RestartDue(pending, ids))

    async def _timer(self, due: _RestartDue) -> None:
        # never cancelled one by one: a restart no longer pending finds a
        # different status; the supervisor's end cancels what is left
        assert due.pending.at is not None
        await trio.sleep_until(due.pending.at)
        ids = due.children
        following = _inplace.start_due(self, due.pending, ids[0]) if len(ids) == 1 else None
        if following is None:
            self.post(due)
            return
        # a timer falling due never waits behind a queue of exits: it runs
        # the child itself, as the loop would have started it
        child = self.children[ids[0]]
        await run_incarnation(*following, self._report, self._classifier(child.spec))

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
