"""Entry points: embed a tree (`open_supervisor`), start one from a nursery
(`run_supervisor`), or run one as a whole program (`run`); and the handles."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, TypeAlias, TypeVar, final, overload

import trio

from specs import ChildSpec, DynamicSupervisorSpec, SpecError, SupervisorSpec, validate

from . import _operations
from ._child import current_incarnation
from ._core import Supervisor
from ._events import Event, Hook, logging_hook
from ._snapshot import (
    ChildCounts,
    ChildInfo,
    SupervisorSnapshot,
    count_children,
    snapshot,
    which_children,
)
from ._stream import DEFAULT_MAX_BUFFER, EventReceiveChannel

DEFAULT_HISTORY: Final = 100

_T = TypeVar("_T")


class _NoPublicConstructor(type):
    """A metaclass whose classes the package builds with ``_create`` (as trio's).

    A handle is only meaningful for a supervisor the runtime runs, so calling
    the class raises :class:`TypeError` instead of making an unconnected one.
    """

    def __call__(cls, *args: object, **kwargs: object) -> None:
        msg = f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        raise TypeError(msg)

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


class _Handle(metaclass=_NoPublicConstructor):
    """What both handles share."""

    #: Marks handles, so a parent's snapshot includes this supervisor's tree.
    is_supervisor_handle = True

    def __init__(self, core: Supervisor) -> None:
        self._core = core

    @property
    def name(self) -> str:
        """The supervisor's name in reports."""
        return self._core.name

    @property
    def running(self) -> bool:
        """Whether the supervisor is serving (started, not stopping)."""
        return self._core.running

    @property
    def history(self) -> tuple[Event, ...]:
        """The most recent events (a bounded history, oldest first)."""
        return self._core.recent()

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its state (OTP lists newest first)."""
        return which_children(self._core)

    def count_children(self) -> ChildCounts:
        """How many children, running, supervisors and workers (OTP's ``count_children``)."""
        return count_children(self._core)

    @property
    def path(self) -> str:
        """Where the supervisor sits in its tree: the root's name, then child ids."""
        return self._core.path

    def snapshot(self) -> SupervisorSnapshot:
        """A frozen, JSON-serialisable picture of the tree below this supervisor."""
        return snapshot(self._core)

    def subscribe(
        self,
        *kinds: type[Event],
        under: str | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> EventReceiveChannel:
        """A channel of this supervisor's events from now on, and its whole subtree's.

        Any number of subscribers, at any time while it runs, also from
        inside a child (see :func:`current_supervisor`). The subtree includes
        supervisors started as children and those opened inside a child
        (``account_pool``'s accounts): each event's ``path`` says where it
        happened. The supervisor never waits for a subscriber: events that do
        not fit ``max_buffer`` are dropped, counted, and stand in the stream
        as one :class:`~supervisor.events.EventsDropped` record, delivered
        once the subscriber makes room. Close the channel (or leave its
        ``async with``) to unsubscribe; it ends once the supervisor stopped.

        Args:
            kinds: Only these event classes (default: all).
            under: Only events of this child or below it: a path such as
                ``"bridge/accounts"`` (the event's ``path`` + ``/`` + ``child``
                is it or starts with it + ``/``).
            max_buffer: Records held for a subscriber that has not read
                them yet (default :data:`DEFAULT_MAX_BUFFER`, 1000).

        Raises:
            TypeError: a kind is not an event class of ``supervisor.events``.
            ValueError: ``max_buffer`` is not a positive int, or ``under``
                is not a path.
            SupervisorNotRunning: the supervisor has stopped.
        """
        return self._core.stream.subscribe(kinds, under, max_buffer)

    async def shutdown(self) -> None:
        """Stop every child in reverse start order, then the supervisor; wait for it.

        Returns at once if the supervisor has already stopped.
        """
        self._core.request_stop()
        await self._core.finished.wait()


@final
class SupervisorHandle(_Handle):
    """Control of a running supervisor, with OTP's API names.

    Not constructed directly: ``open_supervisor`` yields one and
    ``run_supervisor`` passes one to ``task_status.started()``. Every call
    goes through the supervisor's loop, in order with children's exits.
    """

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child after the others and start it; return what it passed to ``started()``.

        Raises:
            ChildAlreadyStarted: a running child has that id.
            ChildAlreadyPresent: a stopped child has that id.
            FailedToStartChild: it failed to start; it is not kept.
        """
        return await _operations.start_child(self._core, spec)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child within its shutdown grace; it stays in the list, not running.

        A temporary child is forgotten. A pending restart of the child is
        cancelled. This is not a restart and counts toward nothing.

        Raises:
            ChildNotFound: no such child.
        """
        await _operations.terminate_child(self._core, child_id)

    async def restart_child(self, child_id: str) -> Any:
        """Start a stopped child again; return what it passed to ``started()``.

        Raises:
            ChildNotFound: no such child.
            ChildRunning: it is running.
            ChildRestarting: its restart is pending.
            FailedToStartChild: it failed to start; it stays stopped.
        """
        return await _operations.restart_child(self._core, child_id)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child.

        Raises:
            ChildNotFound: no such child.
            ChildRunning: it is running.
            ChildRestarting: its restart is pending.
        """
        await _operations.delete_child(self._core, child_id)


@final
class DynamicSupervisorHandle(_Handle):
    """Control of a running dynamic supervisor (OTP's simple_one_for_one).

    Not constructed directly: see :class:`SupervisorHandle`.
    """

    async def start_child(self, *extra_args: object) -> str:
        """Start a child of the template with ``template.args + extra_args``; return its id.

        Raises:
            MaxChildrenReached: the supervisor already has ``max_children``.
            FailedToStartChild: it failed to start; it is not kept.
        """
        return await _operations.start_dynamic_child(self._core, extra_args)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child within its shutdown grace and forget it.

        Raises:
            ChildNotFound: no such child.
        """
        await _operations.terminate_child(self._core, child_id)


#: Either handle: what a spec of either kind gives.
_AnyHandle: TypeAlias = SupervisorHandle | DynamicSupervisorHandle


def _supervisor_name(spec: SupervisorSpec | DynamicSupervisorSpec, name: str | None) -> str:
    return name or spec.name or "supervisor"


@overload
async def run_supervisor(
    spec: SupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
    task_status: trio.TaskStatus[SupervisorHandle] = ...,
) -> None: ...


@overload
async def run_supervisor(
    spec: DynamicSupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
    task_status: trio.TaskStatus[DynamicSupervisorHandle] = ...,
) -> None: ...


@overload
async def run_supervisor(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
    task_status: trio.TaskStatus[_AnyHandle] = ...,
) -> None: ...


async def run_supervisor(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    name: str | None = None,
    hooks: Sequence[Hook] | None = None,
    history: int = DEFAULT_HISTORY,
    rng: random.Random | None = None,
    attach: bool = True,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a supervisor until it is shut down; use with ``await nursery.start(...)``.

    Starts the children in order, each once the previous one is ready, then
    calls ``task_status.started(handle)`` with a :class:`SupervisorHandle`
    (or :class:`DynamicSupervisorHandle`). Returns after an ordered shutdown
    (``handle.shutdown()``, or auto-shutdown); when cancelled, it first
    stops its children in reverse start order.

    Args:
        spec: The tree.
        name: The name in reports (default: ``spec.name``, else
            ``"<its supervisor's name>/<child id>"`` inside a child, else
            ``"supervisor"``).
        hooks: Called with every event; default: :func:`logging_hook` (inside
            a child: none but its tree's, see ``attach``).
        history: How many recent events the handle keeps.
        rng: The source of backoff jitter (seed one for reproducible tests).
        attach: Started inside a supervised child, join that child's tree
            (the default): its events, with their path below the child, also
            go to the tree's hooks (each hook called once per event) and to
            its subscribers, so the root's metrics count them too.
            ``False``: a tree of its own.
        task_status: trio's handshake.

    Raises:
        SpecError: the tree is invalid (see :func:`specs.validate`); nothing ran.
        MaxIntensityReached: it gave up; its children are stopped.
        FailedToStartChild: a child failed to start; the others were stopped.
    """
    if not isinstance(spec, SupervisorSpec | DynamicSupervisorSpec):
        raise SpecError("spec", "spec", f"not a supervisor spec: {spec!r}")
    validate(spec)  # a tree changed behind its constructors' back (a cycle) must not run
    enclosing = current_incarnation() if attach else None
    parent: Supervisor | None = None if enclosing is None else enclosing.owner
    if enclosing is None or parent is None:
        own_name = _supervisor_name(spec, name)
        path = None
        default_hooks: tuple[Hook, ...] = (logging_hook,)
    else:
        own_name = name or spec.name or f"{parent.name}/{enclosing.child}"
        path = f"{parent.path}/{enclosing.child}"
        default_hooks = ()  # its tree's
    core = Supervisor(
        spec,
        name=own_name,
        hooks=default_hooks if hooks is None else tuple(hooks),
        history=history,
        rng=rng,
        parent=parent,
        path=path,
    )
    handle_type = DynamicSupervisorHandle if core.dynamic else SupervisorHandle
    core.handle = handle_type._create(core)
    try:
        async with trio.open_nursery() as nursery:
            await core.run(nursery, task_status)
    except BaseExceptionGroup as group:
        error = _unwrap(group)
        raise error from error.__cause__
    if core.error is not None:
        raise core.error


def current_supervisor(*, root: bool = False) -> _AnyHandle:
    """The handle of the supervisor running the calling child, to subscribe from inside it.

    Args:
        root: The root of its tree instead (through every supervisor it
            joined: see ``attach`` in :func:`run_supervisor`).

    Raises:
        RuntimeError: outside a supervised child.
    """
    inc = current_incarnation()
    if inc is None or inc.owner is None:
        msg = "current_supervisor() is only available inside a supervised child"
        raise RuntimeError(msg)
    core: Supervisor = inc.owner
    while root and core.parent is not None:
        core = core.parent
    handle: _AnyHandle = core.handle
    return handle


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception inside nested one-exception groups, else the group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


@overload
def open_supervisor(
    spec: SupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
) -> AbstractAsyncContextManager[SupervisorHandle]: ...


@overload
def open_supervisor(
    spec: DynamicSupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
) -> AbstractAsyncContextManager[DynamicSupervisorHandle]: ...


@overload
def open_supervisor(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    name: str | None = ...,
    hooks: Sequence[Hook] | None = ...,
    history: int = ...,
    rng: random.Random | None = ...,
    attach: bool = ...,
) -> AbstractAsyncContextManager[_AnyHandle]: ...


@asynccontextmanager
async def open_supervisor(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    name: str | None = None,
    hooks: Sequence[Hook] | None = None,
    history: int = DEFAULT_HISTORY,
    rng: random.Random | None = None,
    attach: bool = True,
) -> AsyncIterator[Any]:  # the overloads above give the precise type
    """Run a supervision tree for the duration of an ``async with`` block.

    ``async with open_supervisor(spec) as sup:`` returns once every child is
    ready; leaving the block shuts the tree down in reverse start order. If
    the supervisor gives up meanwhile, the block is cancelled and
    :class:`MaxIntensityReached` is raised from the ``async with``. An
    exception from the block propagates unchanged, after the shutdown.

    Takes the arguments of :func:`run_supervisor`: opened inside a
    supervised child, it joins that child's tree unless ``attach=False``.

    Yields:
        A :class:`SupervisorHandle` (a :class:`DynamicSupervisorHandle` for a
        dynamic spec).
    """
    try:
        async with trio.open_nursery() as nursery:
            handle: _AnyHandle = await nursery.start(
                lambda task_status: run_supervisor(
                    spec,
                    name=name,
                    hooks=hooks,
                    history=history,
                    rng=rng,
                    attach=attach,
                    task_status=task_status,
                )
            )
            try:
                yield handle
            finally:
                with trio.CancelScope(shield=True):
                    await handle.shutdown()
    except BaseExceptionGroup as group:
        error = _unwrap(group)
        raise error from error.__cause__
