"""The API operations on a running supervisor: start, stop, restart, delete a child.

Each is a plain function of the ``_core.Supervisor`` that the handles
(``_api``) call; each checks its arguments at once, then carries out its
change inside the loop (``Supervisor.call``), in order with children's exits.
The read-only views (``which_children``, ``count_children``, ``snapshot``)
are ``_snapshot``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specs import NEVER, TEMPORARY, ChildSpec, DynamicSupervisorSpec, SpecError, SupervisorSpec

from ._exceptions import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ChildUnresponsive,
    FailedToStartChild,
    MaxChildrenReached,
)
from ._shutdown import terminate
from ._status import Restarting

if TYPE_CHECKING:
    from ._core import Supervisor
    from ._status import Child


def get(sup: Supervisor, child_id: str) -> Child:
    """The child ``child_id``, or :class:`ChildNotFound`."""
    child = sup.children.get(child_id)
    if child is None:
        raise ChildNotFound(sup.name, child_id)
    return child


def get_stopped(sup: Supervisor, child_id: str) -> Child:
    """The stopped child ``child_id``; an error saying why if it is not stopped."""
    child = get(sup, child_id)
    if child.inc is not None:
        raise ChildRunning(sup.name, child_id)
    if child.stuck is not None:
        raise ChildUnresponsive(sup.name, child_id)
    if isinstance(child.status, Restarting):
        raise ChildRestarting(sup.name, child_id)
    return child


async def start_child(sup: Supervisor, spec: ChildSpec) -> Any:
    """Add a child at the end of the start order and start it."""
    if not isinstance(spec, ChildSpec):
        msg = f"start_child takes a ChildSpec (got {spec!r})"
        raise TypeError(msg)
    assert isinstance(sup.spec, SupervisorSpec)
    if spec.significant and sup.spec.auto_shutdown is NEVER:
        raise SpecError(
            spec.id, "significant", f"a significant child needs auto_shutdown in {sup.name}"
        )

    async def op() -> Any:
        existing = sup.children.get(spec.id)
        if existing is not None:
            if existing.inc is not None:
                raise ChildAlreadyStarted(sup.name, spec.id)
            raise ChildAlreadyPresent(sup.name, spec.id)
        child = sup._record(spec, spec.id, spec.args)
        sup.children[spec.id] = child
        return await start_or_raise(sup, child, forget_on_failure=True)

    return await sup.call(op)


async def start_dynamic_child(sup: Supervisor, extra_args: tuple[Any, ...]) -> str:
    """Start one more child of a dynamic supervisor's template; return its id."""
    assert isinstance(sup.spec, DynamicSupervisorSpec)
    template = sup.spec.template
    limit = sup.spec.max_children

    async def op() -> str:
        if limit is not None and len(sup.children) >= limit:
            raise MaxChildrenReached(sup.name, limit)
        child_id = f"{template.id}-{next(sup._dynamic_ids)}"
        child = sup._record(template, child_id, template.args + extra_args)
        sup.children[child_id] = child
        await start_or_raise(sup, child, forget_on_failure=True)
        return child_id

    result: str = await sup.call(op)
    return result


async def start_or_raise(sup: Supervisor, child: Child, *, forget_on_failure: bool) -> Any:
    """Start ``child``; return what it passed to ``started()``, or raise its start error."""
    error = await sup._start(child)
    if error is not None:
        if forget_on_failure:
            del sup.children[child.id]
        raise FailedToStartChild(sup.name, child.id, error) from error
    assert child.inc is not None
    return child.inc.value


async def terminate_child(sup: Supervisor, child_id: str) -> None:
    """Stop a child (and any pending restart of it); a temporary or dynamic one is forgotten."""

    async def op() -> None:
        child = get(sup, child_id)
        child.cancel_restart()
        await terminate(sup, child)
        # an unresponsive one is kept until it ends (``_shutdown.ended_late``)
        if (sup.dynamic or child.spec.restart is TEMPORARY) and child.stuck is None:
            del sup.children[child_id]

    await sup.call(op)


async def restart_child(sup: Supervisor, child_id: str) -> Any:
    """Start a stopped child again; it does not count toward intensity."""

    async def op() -> Any:
        child = get_stopped(sup, child_id)
        return await start_or_raise(sup, child, forget_on_failure=False)

    return await sup.call(op)


async def delete_child(sup: Supervisor, child_id: str) -> None:
    """Forget a stopped child's spec."""

    async def op() -> None:
        del sup.children[get_stopped(sup, child_id).id]

    await sup.call(op)
