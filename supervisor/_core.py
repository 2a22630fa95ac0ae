"""The supervisor: one loop that owns a tree level and carries out the policy.

Where a crash goes: the child's runner (``_child.run_incarnation``) catches
its exception and posts ``Exited``; :meth:`Supervisor._on_exit` asks
``specs.exit_action`` what the exit means, :meth:`Supervisor._restart` asks
``specs.add_restart`` whether intensity allows a restart and
``specs.plan_restart`` which children stop and start, then does exactly that.
Everything that changes the tree (exits, API calls, timers) passes through
:meth:`Supervisor._serve`, one message at a time, in order.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeAlias

import attrs
import trio

from specs import (
    BRUTAL_KILL,
    NEVER,
    ONE_FOR_ONE,
    SUPERVISOR,
    TEMPORARY,
    ChildSpec,
    ChildView,
    DynamicSupervisorSpec,
    ExitAction,
    Strategy,
    SupervisorSpec,
    accepts_task_status,
    add_restart,
    auto_shutdown_due,
    backoff_delay,
    exit_action,
    plan_restart,
)

from ._child import (
    Exited,
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
    ChildTerminated,
    Event,
    GaveUp,
    Hook,
    RestartScheduled,
    ShutdownTimedOut,
    StartFailed,
)
from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    FailedToStartChild,
    MaxChildrenReached,
    MaxIntensityReached,
    SupervisorNotRunning,
)
from ._reasons import ExitReason, classify, release_frames
from ._snapshot import ChildCounts, ChildInfo, ChildSnapshot, ChildState, SupervisorSnapshot

logger = logging.getLogger("supervisor")

#: How many recent exits each child's record keeps.
RECENT_EXITS = 10


@attrs.define(eq=False)
class Child:
    """The supervisor's record of one child, across its incarnations."""

    spec: ChildSpec
    id: str
    args: tuple[Any, ...]
    handshake: bool
    inc: Incarnation | None = None
    state: ChildState = ChildState.STOPPED
    incarnations: int = 0
    restarts: int = 0
    failures: int = 0
    last_exit: ExitReason | None = None
    last_run: float = 0.0
    pending: int | None = None
    next_restart_at: float | None = None
    # created at the first exit: most children never exit, and there are many
    exits_by_kind: Counter[str] | None = None
    recent_exits: deque[tuple[float, ExitReason]] | None = None
    exited_at: float | None = None
    last_recovery: float | None = None
    recovery_total: float = 0.0
    recoveries: int = 0

    def record_exit(self, reason: ExitReason, now: float) -> None:
        """Count an exit by kind and keep it among the recent ones."""
        kind = type(reason.exception).__name__ if reason.exception is not None else str(reason)
        if self.exits_by_kind is None or self.recent_exits is None:
            self.exits_by_kind, self.recent_exits = Counter(), deque(maxlen=RECENT_EXITS)
        self.exits_by_kind[kind] += 1
        # the reason's frames are released (release_frames): keeping it is cheap
        self.recent_exits.append((now, reason))
        self.exited_at = now

    def record_recovery(self, now: float) -> None:
        """A restart after an exit: remember how long the child was down."""
        if self.exited_at is None:
            return
        self.last_recovery = now - self.exited_at
        self.recovery_total += self.last_recovery
        self.recoveries += 1
        self.exited_at = None


@attrs.frozen
class _TryAgain:
    """Retry a restart whose start failed (OTP's ``try_again_restart`` cast)."""

    child: str
    token: int


@attrs.frozen
class _RestartDue:
    """A backoff delay ran out: start these children, if still pending."""

    token: int
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


def _shutdown_shield() -> AbstractContextManager[trio.CancelScope]:
    # A nested supervisor gets its parent's shutdown grace for stopping its
    # own children; a root one finishes its ordered shutdown whatever
    # cancelled it.
    if current_incarnation() is not None:
        return shutdown_grace()
    return trio.CancelScope(shield=True)


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
    ) -> None:
        self.spec = spec
        self.name = name
        self.hooks = hooks
        self.history: deque[Event] = deque(maxlen=history)
        self.rng = rng
        self.dynamic = isinstance(spec, DynamicSupervisorSpec)
        self.strategy: Strategy = ONE_FOR_ONE if self.dynamic else spec.strategy  # type: ignore[union-attr]
        self.children: dict[str, Child] = {}
        self.restarts: tuple[float, ...] = ()
        self.error: BaseException | None = None
        self.running = False
        self.closed = False
        self.finished = trio.Event()
        self._stopping = False
        self._send, self._receive = trio.open_memory_channel[_Message](math.inf)
        self._nursery: trio.Nursery | None = None
        self._timers: dict[int, trio.CancelScope] = {}
        self._tokens = itertools.count(1)
        self._dynamic_ids = itertools.count(1)
        self.handle: Any = None
        # every dynamic child shares the template: inspect its signature once
        self._template = spec.template if isinstance(spec, DynamicSupervisorSpec) else None
        self._template_handshake = self._template is not None and (
            self._template.is_subtree or accepts_task_status(self._template.start)  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        """Record an event and hand it to every hook; a failing hook is logged, not fatal."""
        self.history.append(event)
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("supervisor %r: event hook %r failed", self.name, hook)

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

    async def _serve(self) -> None:
        while self.error is None and not self._stopping:
            message = await self._receive.receive()
            await self._dispatch(message)

    async def _dispatch(self, message: _Message) -> None:
        match message:
            case Exited():
                await self._on_exit(message)
            case _TryAgain(child=child_id, token=token):
                child = self.children.get(child_id)
                if child is not None and child.pending == token:
                    await self._restart(child)
            case _RestartDue(token=token, children=ids):
                self._timers.pop(token, None)
                due = [c for c in ids if (ch := self.children.get(c)) and ch.pending == token]
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
        self.closed = True
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
        with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait(message)

    async def call(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``op`` inside the loop, in order with everything else, and return its result."""
        if self.closed:
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
        if spec is self._template:
            return Child(spec=spec, id=child_id, args=args, handshake=self._template_handshake)
        # a subtree signals ready itself, once all its children are up
        handshake = spec.is_subtree or accepts_task_status(spec.start)  # type: ignore[arg-type]
        return Child(spec=spec, id=child_id, args=args, handshake=handshake)

    def _runner_call(self, child: Child) -> Callable[[TaskStatus], Awaitable[object]]:
        start = child.spec.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            from ._api import run_supervisor  # a subtree is a supervisor run as a child

            subtree: SupervisorSpec | DynamicSupervisorSpec = start
            name = start.name or f"{self.name}/{child.id}"

            async def run_subtree(status: TaskStatus) -> None:
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
        return lambda status: function(*args)

    async def _start(self, child: Child, *, restarted: bool = False) -> BaseException | None:
        """Start one incarnation and wait until it is ready; return its start error, if any."""
        assert self._nursery is not None
        child.incarnations += 1
        inc = Incarnation(
            child.id,
            child.incarnations,
            self.name,
            child.restarts + (1 if restarted else 0),
            child.last_exit,
        )
        child.inc = inc
        child.state = ChildState.STARTING
        child.pending = None
        child.next_restart_at = None
        if not child.handshake:
            # ready at once, as a spawned task: no need to wait for it to run
            TaskStatus(inc).started()
        self._nursery.start_soon(
            run_incarnation,
            inc,
            self._runner_call(child),
            self.post,
            name=f"{self.name}/{child.id}#{inc.number}",
        )
        if not inc.ready.is_set():
            await inc.ready.wait()
        now = trio.current_time()
        if inc.start_error is not None:
            release_frames(inc.start_error)
            child.inc = None
            child.state = ChildState.STOPPED
            child.last_exit = classify(inc.start_error)
            child.last_run = 0.0
            child.record_exit(child.last_exit, now)
            self.emit(
                StartFailed(supervisor=self.name, child=child.id, error=inc.start_error, time=now)
            )
            return inc.start_error
        child.state = ChildState.RUNNING
        if restarted:
            child.restarts += 1
            child.record_recovery(now)
            self.emit(
                ChildRestarted(
                    supervisor=self.name, child=child.id, incarnation=inc.number, time=now
                )
            )
        else:
            self.emit(
                ChildStarted(supervisor=self.name, child=child.id, incarnation=inc.number, time=now)
            )
        return None

    def _grace(self, child: Child) -> float:
        shutdown = child.spec.shutdown
        return 0.0 if shutdown is BRUTAL_KILL else float(shutdown)

    async def _terminate(self, child: Child) -> None:
        """Stop a running child: cancel it, give it its grace, then cut its cleanup short."""
        inc = child.inc
        if inc is None:
            return
        grace = self._grace(child)
        inc.request_stop(trio.current_time() + grace)
        await self._await_stopped(child, inc, grace)

    async def _await_stopped(self, child: Child, inc: Incarnation, grace: float) -> None:
        if not inc.done.is_set():
            # most children end within the scheduling round their cancellation
            # takes: give them that round before paying for a deadline scope
            await trio.lowlevel.cancel_shielded_checkpoint()
        if grace > 0 and not inc.done.is_set():
            with trio.CancelScope(deadline=inc.grace_deadline):
                await inc.done.wait()
        if grace > 0 and (not inc.done.is_set() or inc.cut_short):
            self.emit(
                ShutdownTimedOut(
                    supervisor=self.name, child=child.id, grace=grace, time=trio.current_time()
                )
            )
        if not inc.done.is_set():  # waiting on a set event would still yield a round
            await inc.done.wait()
        child.inc = None
        child.state = ChildState.STOPPED
        assert inc.reason is not None
        release_frames(inc.reason.exception)
        self.emit(
            ChildTerminated(
                supervisor=self.name,
                child=child.id,
                incarnation=inc.number,
                reason=inc.reason,
                time=trio.current_time(),
            )
        )

    async def _stop_all(self) -> None:
        """Stop every child: in reverse start order, or all at once if dynamic (as OTP)."""
        for scope in self._timers.values():
            scope.cancel()
        self._timers.clear()
        for child in self.children.values():
            child.pending = None
            child.next_restart_at = None
            if child.inc is None:
                child.state = ChildState.STOPPED
        if not self.dynamic:
            for child in reversed(list(self.children.values())):
                await self._terminate(child)
            return
        live = [child for child in self.children.values() if child.inc is not None]
        now = trio.current_time()
        for child in live:
            assert child.inc is not None
            child.inc.request_stop(now + self._grace(child))
        for child in live:
            if child.inc is not None:
                await self._await_stopped(child, child.inc, self._grace(child))

    # ------------------------------------------------------------ the policy

    async def _on_exit(self, message: Exited) -> None:
        """A child's run ended on its own: keep, remove or restart it, per ``exit_action``."""
        child = self.children.get(message.child)
        if child is None or child.inc is None or child.inc.number != message.incarnation:
            return  # already stopped by us; its exit was expected
        inc = child.inc
        child.inc = None
        now = trio.current_time()
        release_frames(message.reason.exception)
        child.last_exit = message.reason
        child.last_run = now - inc.started_at
        child.record_exit(message.reason, now)
        action = exit_action(child.spec.restart, message.reason.kind, dynamic=self.dynamic)
        self.emit(
            ChildExited(
                supervisor=self.name,
                child=child.id,
                incarnation=inc.number,
                reason=message.reason,
                action=action,
                time=now,
            )
        )
        if action is ExitAction.RESTART:
            await self._restart(child)
            return
        child.state = ChildState.STOPPED
        if action is ExitAction.REMOVE:
            del self.children[child.id]
        if isinstance(self.spec, SupervisorSpec) and self.spec.auto_shutdown is not NEVER:
            others = any(
                c.spec.significant and c.state is not ChildState.STOPPED
                for c in self.children.values()
                if c is not child
            )
            if auto_shutdown_due(
                self.spec.auto_shutdown,
                significant=child.spec.significant,
                other_significant_alive=others,
            ):
                self._stopping = True

    async def _restart(self, child: Child) -> None:
        """OTP's ``restart/2``: count intensity, plan by strategy, stop, then start."""
        now = trio.current_time()
        self.restarts, allowed = add_restart(
            self.restarts, now, intensity=self.spec.intensity, period=self.spec.period
        )
        if not allowed:
            self._give_up(child, now)
            return
        backoff = self.spec.backoff
        if backoff is not None and child.last_run >= backoff.reset_after:
            child.failures = 0
        child.failures += 1
        if self.strategy is ONE_FOR_ONE:
            plan = plan_restart(ONE_FOR_ONE, (), child.id)
        else:
            views = [
                ChildView(c.id, c.spec.restart, c.inc is not None) for c in self.children.values()
            ]
            plan = plan_restart(self.strategy, views, child.id)
        for child_id in plan.stop:
            await self._terminate(self.children[child_id])
        for child_id in plan.remove:
            del self.children[child_id]
        delay = self._restart_delay(child)
        if delay > 0:
            self._schedule(child, plan.start, delay, now)
            return
        await self._start_group(plan.start)

    def _restart_delay(self, child: Child) -> float:
        hint = child.last_exit.restart_delay if child.last_exit is not None else None
        if hint is not None:
            return hint
        if self.spec.backoff is None:
            return 0.0
        return backoff_delay(self.spec.backoff, child.failures, self.rng)

    def _schedule(self, child: Child, ids: Iterable[str], delay: float, now: float) -> None:
        assert self._nursery is not None
        token = next(self._tokens)
        ids = tuple(ids)
        for child_id in ids:
            pending = self.children[child_id]
            pending.pending = token
            pending.state = ChildState.RESTARTING
            pending.next_restart_at = now + delay
        self.emit(
            RestartScheduled(
                supervisor=self.name, child=child.id, delay=delay, failures=child.failures, time=now
            )
        )
        scope = trio.CancelScope(deadline=math.inf)
        self._timers[token] = scope
        self._nursery.start_soon(self._timer, scope, now + delay, _RestartDue(token, ids))

    async def _timer(self, scope: trio.CancelScope, at: float, message: _RestartDue) -> None:
        with scope:
            await trio.sleep_until(at)
            self.post(message)

    async def _start_group(self, ids: Iterable[str]) -> None:
        """Start children in order; on a failed start, stop there and retry through the loop."""
        ids = tuple(ids)
        for index, child_id in enumerate(ids):
            child = self.children.get(child_id)
            if child is None or child.inc is not None:
                continue
            if await self._start(child, restarted=True) is None:
                continue
            for later_id in ids[index + 1 :]:
                later = self.children.get(later_id)
                if later is not None and later.inc is None:
                    later.state = ChildState.STOPPED
                    later.pending = None
                    later.next_restart_at = None
            token = next(self._tokens)
            child.pending = token
            child.state = ChildState.RESTARTING
            self.post(_TryAgain(child.id, token))
            return

    def _give_up(self, child: Child, now: float) -> None:
        self.emit(
            GaveUp(
                supervisor=self.name,
                child=child.id,
                reason=child.last_exit,
                intensity=self.spec.intensity,
                period=self.spec.period,
                time=now,
            )
        )
        child.state = ChildState.STOPPED
        child.pending = None
        if child.spec.restart is TEMPORARY:
            del self.children[child.id]
        self.error = MaxIntensityReached(self.name, child.id, child.last_exit)

    # ------------------------------------------------------------------- API

    def _get(self, child_id: str) -> Child:
        child = self.children.get(child_id)
        if child is None:
            raise ChildNotFound(self.name, child_id)
        return child

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child at the end of the start order and start it."""
        if not isinstance(spec, ChildSpec):
            msg = f"start_child takes a ChildSpec (got {spec!r})"
            raise TypeError(msg)
        assert isinstance(self.spec, SupervisorSpec)
        if spec.significant and self.spec.auto_shutdown is NEVER:
            from specs import SpecError

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
            child.pending = None
            child.next_restart_at = None
            await self._terminate(child)
            child.state = ChildState.STOPPED
            if self.dynamic or child.spec.restart is TEMPORARY:
                del self.children[child_id]

        await self.call(op)

    async def restart_child(self, child_id: str) -> Any:
        """Start a stopped child again; it does not count toward intensity."""

        async def op() -> Any:
            child = self._get(child_id)
            if child.inc is not None:
                raise ChildRunning(self.name, child_id)
            if child.state is ChildState.RESTARTING:
                raise ChildRestarting(self.name, child_id)
            return await self._start_or_raise(child, forget_on_failure=False)

        return await self.call(op)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec."""

        async def op() -> None:
            child = self._get(child_id)
            if child.inc is not None:
                raise ChildRunning(self.name, child_id)
            if child.state is ChildState.RESTARTING:
                raise ChildRestarting(self.name, child_id)
            del self.children[child_id]

        await self.call(op)

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order."""
        return [
            ChildInfo(
                id=child.id,
                state=child.state,
                kind=child.spec.kind.value,
                incarnation=child.incarnations,
                value=child.inc.value if child.inc is not None else None,
            )
            for child in self.children.values()
        ]

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children``."""
        supervisors = sum(1 for c in self.children.values() if c.spec.kind is SUPERVISOR)
        active = sum(1 for c in self.children.values() if c.state is ChildState.RUNNING)
        return ChildCounts(
            specs=len(self.children),
            active=active,
            supervisors=supervisors,
            workers=len(self.children) - supervisors,
        )

    def snapshot(self) -> SupervisorSnapshot:
        """A frozen, JSON-serialisable picture of this supervisor and its subtrees."""
        from specs import restarts_in_window

        now = trio.current_time()
        children = []
        for child in self.children.values():
            inc = child.inc
            nested = None
            # a subtree, or a child that runs a supervisor itself and hands over its handle
            if inc is not None and getattr(type(inc.value), "is_supervisor_handle", False):
                nested = inc.value.snapshot()
            children.append(
                ChildSnapshot(
                    id=child.id,
                    kind=child.spec.kind.value,
                    restart=child.spec.restart.value,
                    state=child.state,
                    incarnation=child.incarnations,
                    restarts=child.restarts,
                    uptime=now - inc.started_at
                    if inc is not None and child.state is ChildState.RUNNING
                    else None,
                    next_restart_in=None
                    if child.next_restart_at is None
                    else max(0.0, child.next_restart_at - now),
                    last_exit=None if child.last_exit is None else str(child.last_exit),
                    exits_by_kind=dict(child.exits_by_kind or {}),
                    recent_exits=tuple((t, str(r)) for t, r in child.recent_exits or ()),
                    last_recovery=child.last_recovery,
                    mean_recovery=child.recovery_total / child.recoveries
                    if child.recoveries
                    else None,
                    supervisor=nested,
                )
            )
        return SupervisorSnapshot(
            name=self.name,
            strategy="dynamic" if self.dynamic else self.strategy.value,
            intensity=self.spec.intensity,
            period=self.spec.period,
            restarts_in_window=restarts_in_window(self.restarts, now, self.spec.period),
            time=now,
            children=tuple(children),
        )
