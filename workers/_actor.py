"""The actor base: ``init`` / ``run`` / ``terminate``, a mailbox, probes, typed exits.

Where a worker's exception goes: :func:`_run_worker` catches it, turns it into
a typed :class:`~workers.Failure` with the worker's classifier, redacts the
secrets in it and its causes (:func:`~workers.redact_exception`: what the
supervisor keeps is shown in snapshots, events and logs), fails every
caller still waiting on its mailbox, runs ``terminate`` within the shutdown
grace, and re-raises the failure, which its supervisor receives.

How a worker ends, and what its supervisor makes of it:

- a requested stop (``worker.stop()``, ``ctx.stop()``, ``registry.stop(name)``):
  ``run`` is cancelled and the worker exits normally: a TRANSIENT worker stays
  down (a PERMANENT one is restarted, as in OTP);
- ``run`` returning without a stop request: :class:`~workers.UnexpectedStop`, a
  failure: restarted (TRANSIENT too), as a connection loop that ended on its own
  must be;
- ``run`` (or ``init``, a probe, a mailbox handler) raising: the typed failure;
  a normal-exit one (:class:`~workers.AuthRevoked`, :class:`~workers.Conflict`)
  leaves a TRANSIENT worker down, any other restarts it.
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, ClassVar, TypeVar

import attrs
import trio

import supervisor
from specs import Backoff, ChildSpec, FailurePolicy, Restart, ShutdownValue, SupervisorSpec

from ._classify import DEFAULT, Classifier
from ._exceptions import NotRunning
from ._failures import Failure, HeartbeatTimeout, UnexpectedStop
from ._mailbox import CallEnvelope, CastEnvelope, Mailbox, Registry, registry
from ._redact import redact_exception

T = TypeVar("T")


class _ClassDefault(enum.Enum):
    """Marks an argument left to the worker class's default."""

    TOKEN = 0


@attrs.define(eq=False)
class Context:
    """One incarnation of a worker, as its code sees it.

    Attributes:
        child: The supervisor's view: id, incarnation, restarts, last exit.
        nursery: For the worker's own background tasks; cancelled when
            ``run`` returns or fails.
        mailbox: This incarnation's inbox.
        stop_requested: Whether someone asked this incarnation to stop.
    """

    child: supervisor.ChildContext
    nursery: trio.Nursery
    mailbox: Mailbox
    resources: AsyncExitStack
    stop_requested: bool = False
    # around ``run`` only: a stop asked for during ``init`` ends ``run`` at once
    _run_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)

    def stop(self) -> None:
        """Ask this incarnation to stop: ``run`` is cancelled, then the worker exits normally.

        Also from ``run`` or a mailbox handler (after the reply is sent, the worker
        stops, as OTP's ``{stop, normal, Reply, State}``). Asked during ``init``, it
        takes effect once ``init`` returns.
        """
        self.stop_requested = True
        self._run_scope.cancel()

    @property
    def restarts(self) -> int:
        """How many times the supervisor restarted this worker automatically."""
        return self.child.restarts

    @property
    def last_failure(self) -> BaseException | None:
        """What ended the previous incarnation (a typed failure), if any."""
        last = self.child.last_exit
        return None if last is None else last.exception

    async def enter(self, manager: AbstractAsyncContextManager[T]) -> T:
        """Enter a resource for this incarnation; it is closed after ``terminate``."""
        return await self.resources.enter_async_context(manager)


class Worker:
    """Base class of worker actors (OTP's gen_server, for trio).

    Override what you need:

    - ``init(ctx)``: connect; the supervisor starts the next sibling only
      once it returns. Resources entered with ``ctx.enter`` are fresh each
      incarnation and closed after ``terminate``.
    - ``run(ctx)``: the main loop, until stopped (:meth:`stop`, ``ctx.stop()``,
      ``registry.stop(name)``: then it is cancelled and the worker exits
      normally). A ``run`` that returns without a stop request is an unexpected
      stop (:class:`~workers.UnexpectedStop`, restarted like a crash); raise to
      fail (library exceptions are classified into typed failures).
    - ``terminate(ctx, reason)``: cleanup, within the child's shutdown grace.
    - ``handle_call(ctx, request)`` / ``handle_cast(ctx, message)``: the
      mailbox. An exception there fails the worker; the caller gets it.
    - ``probe(ctx)``: a liveness probe, run every ``probe_interval`` seconds;
      one that fails or takes over ``probe_timeout`` ends the worker with
      :class:`HeartbeatTimeout`.

    A worker object is itself an async callable, so it can be a
    ``ChildSpec``'s ``start`` (see :meth:`child_spec`). The same object
    serves every incarnation: keep cross-restart state (an update offset, a
    proxy pool) on it, and per-incarnation state in ``init``/``ctx``.

    Args:
        name: The name it registers under (default: its child id).
        registry: Where it registers (default: ``workers.registry``).
    """

    #: The mailbox's capacity; senders wait when it is full.
    mailbox_size: ClassVar[int] = 64
    #: Seconds between liveness probes (``None``: no probe).
    probe_interval: ClassVar[float | None] = None
    #: Seconds a probe may take.
    probe_timeout: ClassVar[float] = 5.0
    #: Turns exceptions into typed failures.
    classifier: ClassVar[Classifier] = DEFAULT
    #: What :meth:`reconnecting_child_spec` gives this kind of worker by default.
    reconnect_backoff: ClassVar[Backoff | None] = Backoff()
    reconnect_intensity: ClassVar[int] = 10
    reconnect_period: ClassVar[float] = 60.0

    def __init__(self, *, name: str | None = None, registry: Registry | None = None) -> None:
        self._name = name
        self.registry = registry if registry is not None else _default_registry()
        self._current: Context | None = None

    def stop(self) -> None:
        """Ask the running incarnation to stop (see :meth:`Context.stop`); a normal exit.

        Raises:
            NotRunning: no incarnation is running.
        """
        ctx = self._current
        if ctx is None:
            raise NotRunning(self._name or type(self).__name__)
        ctx.stop()

    async def init(self, ctx: Context) -> None:
        """Connect; runs before the supervisor starts the next sibling."""

    async def run(self, ctx: Context) -> None:
        """The main loop (default: serve the mailbox until stopped)."""
        await trio.sleep_forever()

    async def terminate(self, ctx: Context, reason: BaseException | None) -> None:
        """Clean up after the run, within the shutdown grace.

        Args:
            reason: The failure it exits with, or ``None`` (normal or stopped).
        """

    async def handle_call(self, ctx: Context, request: Any) -> Any:
        """Answer a ``call``."""
        msg = f"{type(self).__name__} does not handle calls (got {request!r})"
        raise NotImplementedError(msg)

    async def handle_cast(self, ctx: Context, message: Any) -> None:
        """Handle a ``cast``."""
        msg = f"{type(self).__name__} does not handle casts (got {message!r})"
        raise NotImplementedError(msg)

    async def probe(self, ctx: Context) -> None:
        """Check the worker is alive (default: nothing to check)."""

    def child_spec(
        self,
        id: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown: ShutdownValue = 5.0,
        significant: bool = False,
    ) -> ChildSpec:
        """A ``ChildSpec`` that runs this worker, classified by its ``classifier``."""
        return ChildSpec(
            id=id,
            start=self,
            restart=restart,
            shutdown=shutdown,
            significant=significant,
            classifier=self.classifier,
        )

    def reconnecting_child_spec(
        self,
        id: str,
        *,
        backoff: Backoff | _ClassDefault | None = _ClassDefault.TOKEN,
        intensity: int | None = None,
        period: float | None = None,
        restart: Restart = Restart.TRANSIENT,
        shutdown: ShutdownValue = 5.0,
        failure_policy: FailurePolicy | None = None,
    ) -> ChildSpec:
        """A child that runs this worker under its own one-child supervisor.

        Backoff and intensity are supervisor settings; this gives the worker its
        own, so it reconnects with its own delays and counts its own restarts
        whatever its siblings do (a failure's own delay, a FloodWait's seconds,
        still wins). The worker registers under ``id``. The subtree is
        PERMANENT: if it gives up, its parent decides.

        Args:
            id: The child's id (and the worker's, inside the subtree).
            backoff: The reconnect delays (default: the class's ``reconnect_backoff``).
            intensity: Restarts allowed within ``period`` before giving up
                (default: ``reconnect_intensity``).
            period: See ``intensity`` (default: ``reconnect_period``).
            restart: The worker's restart type. TRANSIENT by default: every
                failure reconnects, also a ``run`` that returned on its own
                (:class:`~workers.UnexpectedStop`); a normal exit (a requested
                stop, or :class:`~workers.AuthRevoked`) stays down, visible,
                until ``restart_child``.
            shutdown: The worker's shutdown grace.
            failure_policy: Its supervisor's decisions and budgets per
                failure kind (e.g. ``specs.FIELD_REPORT_POLICY``; ``None``: the
                restart type decides).
        """
        inner = SupervisorSpec(
            children=[self.child_spec(id, restart=restart, shutdown=shutdown)],
            backoff=self.reconnect_backoff if isinstance(backoff, _ClassDefault) else backoff,
            intensity=self.reconnect_intensity if intensity is None else intensity,
            period=self.reconnect_period if period is None else period,
            classifier=self.classifier,
            failure_policy=failure_policy,
        )
        return ChildSpec(id=id, start=inner)

    async def __call__(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await _run_worker(self, task_status)


def _default_registry() -> Registry:
    return registry


def refused_on_restart(ctx: Context, failure: Failure) -> bool:
    """Whether a failure in ``init`` ends this incarnation just after its start.

    A refusal for good (a normal-exit failure: credentials refused, a session
    revoked) on a restart is a crash just after start, not a failed start: a
    failed start the supervisor retries (OTP's ``try_again_restart``) however
    TRANSIENT the worker is, while an exit lets a TRANSIENT worker stay down.
    The first start still fails, so a tree with bad credentials never comes up.
    A worker for which this is true returns from ``init`` and ends ``run``
    with ``failure`` at once.
    """
    return failure.supervisor_normal_exit and ctx.child.incarnation > 1


async def _serve_mailbox(worker: Worker, ctx: Context) -> None:
    async for envelope in ctx.mailbox.receive:
        if isinstance(envelope, CallEnvelope):
            # an exception fails the worker; the mailbox's close tells the caller
            envelope.reply.resolve(await worker.handle_call(ctx, envelope.request))
        elif isinstance(envelope, CastEnvelope):
            await worker.handle_cast(ctx, envelope.message)
        else:  # a stop: its caller is released when the mailbox closes
            ctx.stop()


async def _probe_loop(worker: Worker, ctx: Context, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(worker.probe_timeout) as scope:
            await worker.probe(ctx)
        if scope.cancelled_caught:
            raise HeartbeatTimeout(after=worker.probe_timeout)


def _failure_of(
    error: BaseException, classifier: Classifier
) -> tuple[BaseException, BaseException]:
    """The typed failure an error means, and the exception it was made from.

    Cancellation and KeyboardInterrupt stay as they are; a group is looked
    into, ignoring the cancellations that came with the real error.
    """
    leaf = error
    if isinstance(error, BaseExceptionGroup):
        rest = error.split(trio.Cancelled)[1]
        if rest is None:
            return error, error
        leaf = rest
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
    if not isinstance(leaf, Exception):
        return (error if leaf is error else leaf), leaf
    return classifier.classify(leaf), leaf


async def _run_worker(worker: Worker, task_status: trio.TaskStatus[Any]) -> None:
    child = supervisor.current_child()
    mailbox = Mailbox(worker._name or child.id, worker.mailbox_size)
    resources = AsyncExitStack()
    ctx: Context | None = None
    reason: BaseException | None = None
    registered = False
    try:
        async with trio.open_nursery() as nursery:
            ctx = Context(child=child, nursery=nursery, mailbox=mailbox, resources=resources)
            worker._current = ctx
            await worker.init(ctx)
            worker.registry.register(mailbox)
            registered = True
            task_status.started(worker)
            nursery.start_soon(_serve_mailbox, worker, ctx)
            if worker.probe_interval is not None:
                nursery.start_soon(_probe_loop, worker, ctx, worker.probe_interval)
            with ctx._run_scope:
                await worker.run(ctx)
            if not ctx.stop_requested:
                raise UnexpectedStop(worker=mailbox.name)
            nursery.cancel_scope.cancel()
    except BaseException as error:
        reason, cause = _failure_of(error, worker.classifier)
        # the one hand-over to the supervisor: nothing it keeps may show a secret
        redact_exception(reason)
        redact_exception(cause)
        if reason is error:
            raise
        if reason is cause:  # already typed; only unwrapped from its group
            raise reason from reason.__cause__
        raise reason from cause
    finally:
        if ctx is not None and worker._current is ctx:
            worker._current = None
        if registered:
            worker.registry.unregister(mailbox)
        failure = reason if isinstance(reason, Failure) else None
        mailbox.close(failure)
        with supervisor.shutdown_grace():
            try:
                if ctx is not None:
                    await worker.terminate(ctx, failure)
            finally:
                await resources.aclose()
