"""Declaring supervision trees: frozen, self-validating specifications.

Nothing here imports trio: a spec is pure data that the ``supervisor`` runtime
executes.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import attrs

from ._errors import SpecError


class Restart(enum.Enum):
    """When a child that exited is started again (OTP's ``restart`` key)."""

    #: Always restarted, whatever the exit reason, a normal return included.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit; a normal return or a
    #: ``Shutdown`` exit leaves it in the list, not running.
    TRANSIENT = "transient"
    #: Never restarted; removed from the list when it exits.
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must restart."""

    #: Only the child that exited.
    ONE_FOR_ONE = "one_for_one"
    #: The child that exited and every child started after it.
    REST_FOR_ONE = "rest_for_one"
    #: Every child.
    ONE_FOR_ALL = "one_for_all"


class ChildKind(enum.Enum):
    """Whether a child is a worker or a supervisor (OTP's ``type`` key)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class AutoShutdown(enum.Enum):
    """When a supervisor stops itself because significant children ended."""

    #: Never (the default, and OTP's).
    NEVER = "never"
    #: As soon as any significant child exits on its own and is not restarted.
    ANY_SIGNIFICANT = "any_significant"
    #: When no significant child is left running.
    ALL_SIGNIFICANT = "all_significant"


class BrutalKill(enum.Enum):
    """The type of :data:`BRUTAL_KILL`."""

    BRUTAL_KILL = "brutal_kill"

    def __repr__(self) -> str:
        return "BRUTAL_KILL"


#: A ``shutdown`` value: the child gets no grace at all, it is cancelled at once.
BRUTAL_KILL: Final = BrutalKill.BRUTAL_KILL
#: A ``shutdown`` value: the child gets as long as it needs (default for subtrees).
INFINITY: Final = math.inf

#: Seconds of grace, :data:`INFINITY`, or :data:`BRUTAL_KILL`.
ShutdownValue: TypeAlias = float | BrutalKill

PERMANENT: Final = Restart.PERMANENT
TRANSIENT: Final = Restart.TRANSIENT
TEMPORARY: Final = Restart.TEMPORARY
ONE_FOR_ONE: Final = Strategy.ONE_FOR_ONE
REST_FOR_ONE: Final = Strategy.REST_FOR_ONE
ONE_FOR_ALL: Final = Strategy.ONE_FOR_ALL
WORKER: Final = ChildKind.WORKER
SUPERVISOR: Final = ChildKind.SUPERVISOR
NEVER: Final = AutoShutdown.NEVER
ANY_SIGNIFICANT: Final = AutoShutdown.ANY_SIGNIFICANT
ALL_SIGNIFICANT: Final = AutoShutdown.ALL_SIGNIFICANT

#: Elixir's defaults (OTP's are 1 restart in 5 seconds).
DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = 5.0
DEFAULT_SHUTDOWN: Final = 5.0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_shutdown(owner: str, value: object) -> None:
    if value is BRUTAL_KILL:
        return
    if not _is_number(value) or math.isnan(value) or value < 0:  # type: ignore[arg-type,operator]
        raise SpecError(
            owner,
            "shutdown",
            f"must be seconds >= 0, INFINITY or BRUTAL_KILL (got {value!r})",
        )


def _check_intensity(owner: str, intensity: object, period: object) -> None:
    if not isinstance(intensity, int) or isinstance(intensity, bool) or intensity < 0:
        raise SpecError(owner, "intensity", f"must be an integer >= 0 (got {intensity!r})")
    if (
        not _is_number(period)
        or not math.isfinite(period)  # type: ignore[arg-type]
        or period <= 0  # type: ignore[operator]
    ):
        raise SpecError(owner, "period", f"must be finite seconds > 0 (got {period!r})")


def accepts_task_status(start: Callable[..., Any]) -> bool:
    """Tell whether ``start`` takes trio's ``task_status`` keyword.

    Such a child is "started" when it calls ``task_status.started()``;
    any other child is started as soon as it is scheduled.
    """
    try:
        parameters = inspect.signature(start).parameters
    except (TypeError, ValueError):  # builtins and some C callables
        return False
    return "task_status" in parameters


@attrs.frozen(kw_only=True)
class Backoff:
    """A delay before each automatic restart of a child (off by default).

    The n-th consecutive restart of a child waits
    ``min(wait_max, wait_initial * wait_exp_base**(n-1) + U(0, wait_jitter))``
    seconds (stamina's formula and names). The count goes back to zero once the
    child has run for ``reset_after`` seconds (Kubernetes' idea).

    Args:
        wait_initial: Seconds before the first restart.
        wait_max: The longest delay.
        wait_jitter: Up to this many random seconds are added, so many
            children restarting together spread out.
        wait_exp_base: The growth factor per consecutive failure.
        reset_after: Seconds of healthy running that reset the count.
    """

    wait_initial: float = 0.5
    wait_max: float = 60.0
    wait_jitter: float = 1.0
    wait_exp_base: float = 2.0
    reset_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        checks = (
            ("wait_initial", self.wait_initial >= 0 if _is_number(self.wait_initial) else False),
            ("wait_max", _is_number(self.wait_max) and self.wait_max >= self.wait_initial),
            ("wait_jitter", _is_number(self.wait_jitter) and self.wait_jitter >= 0),
            ("wait_exp_base", _is_number(self.wait_exp_base) and self.wait_exp_base >= 1),
            ("reset_after", _is_number(self.reset_after) and self.reset_after > 0),
        )
        for field, ok in checks:
            if not ok or math.isnan(getattr(self, field)):
                raise SpecError(
                    "Backoff",
                    field,
                    f"invalid value {getattr(self, field)!r} (need wait_initial >= 0, "
                    "wait_max >= wait_initial, wait_jitter >= 0, wait_exp_base >= 1, "
                    "reset_after > 0)",
                )


def _default_shutdown(self: ChildSpec) -> ShutdownValue:
    if isinstance(self.start, SupervisorSpec | DynamicSupervisorSpec):
        return INFINITY
    return DEFAULT_SHUTDOWN


def _default_kind(self: ChildSpec) -> ChildKind:
    if isinstance(self.start, SupervisorSpec | DynamicSupervisorSpec):
        return SUPERVISOR
    return WORKER


def _to_tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class ChildSpec:
    """One child of a supervisor.

    Args:
        id: A name unique among its siblings.
        start: What to run: an async callable, called with ``*args`` (if it
            accepts ``task_status`` it counts as started once it calls
            ``task_status.started()``, OTP's ``init`` returning; otherwise at
            once), or a :class:`SupervisorSpec` / :class:`DynamicSupervisorSpec`
            for a subtree.
        args: Positional arguments for ``start``.
        restart: :data:`PERMANENT`, :data:`TRANSIENT` or :data:`TEMPORARY`.
        shutdown: Seconds the child gets to clean up once told to stop,
            :data:`BRUTAL_KILL` or :data:`INFINITY`. Default 5 s for a worker,
            :data:`INFINITY` for a subtree.
        kind: :data:`WORKER` or :data:`SUPERVISOR`; derived from ``start``.
        significant: Whether the child's own exit can end its supervisor,
            under the supervisor's ``auto_shutdown``.
    """

    id: str
    start: Callable[..., Any] | SupervisorSpec | DynamicSupervisorSpec
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_tuple)
    restart: Restart = PERMANENT
    shutdown: ShutdownValue = attrs.field(default=attrs.Factory(_default_shutdown, takes_self=True))
    kind: ChildKind = attrs.field(default=attrs.Factory(_default_kind, takes_self=True))
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise SpecError(repr(self.id), "id", "must be a non-empty string")
        if "/" in self.id:
            raise SpecError(self.id, "id", "must not contain '/' (it separates tree paths)")
        if not isinstance(self.start, SupervisorSpec | DynamicSupervisorSpec) and not callable(
            self.start
        ):
            raise SpecError(
                self.id,
                "start",
                f"must be an async callable or a supervisor spec (got {self.start!r})",
            )
        if not isinstance(self.restart, Restart):
            raise SpecError(self.id, "restart", f"must be a Restart (got {self.restart!r})")
        _check_shutdown(self.id, self.shutdown)
        if not isinstance(self.kind, ChildKind):
            raise SpecError(self.id, "kind", f"must be a ChildKind (got {self.kind!r})")
        if not isinstance(self.significant, bool):
            raise SpecError(self.id, "significant", f"must be a bool (got {self.significant!r})")
        if self.significant and self.restart is PERMANENT:
            raise SpecError(
                self.id, "significant", "a PERMANENT child cannot be significant (OTP rule)"
            )
        if self.args and isinstance(self.start, SupervisorSpec | DynamicSupervisorSpec):
            raise SpecError(self.id, "args", "a subtree takes no arguments")

    @property
    def is_subtree(self) -> bool:
        """Whether ``start`` is a supervisor spec rather than a callable."""
        return isinstance(self.start, SupervisorSpec | DynamicSupervisorSpec)


def _children_tuple(value: Sequence[ChildSpec]) -> tuple[ChildSpec, ...]:
    if isinstance(value, ChildSpec) or not isinstance(value, Sequence):
        raise SpecError("SupervisorSpec", "children", f"must be a sequence (got {value!r})")
    return tuple(value)


@attrs.frozen(kw_only=True)
class SupervisorSpec:
    """A supervisor with a fixed, ordered list of children.

    Args:
        children: The children, in start order.
        strategy: :data:`ONE_FOR_ONE`, :data:`REST_FOR_ONE` or :data:`ONE_FOR_ALL`.
        intensity: At most this many restarts ...
        period: ... within any ``period`` seconds; one more and the
            supervisor gives up: it stops its children and fails to its parent.
        auto_shutdown: Whether significant children's exits end the supervisor.
        backoff: ``None`` restarts at once (OTP); a :class:`Backoff` delays
            each restart.
        name: How the supervisor is named in reports; a subtree defaults to its
            child id.
    """

    children: tuple[ChildSpec, ...] = attrs.field(converter=_children_tuple)
    strategy: Strategy = ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    auto_shutdown: AutoShutdown = NEVER
    backoff: Backoff | None = None
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        owner = self.name or "SupervisorSpec"
        if not isinstance(self.strategy, Strategy):
            raise SpecError(owner, "strategy", f"must be a Strategy (got {self.strategy!r})")
        _check_intensity(owner, self.intensity, self.period)
        if not isinstance(self.auto_shutdown, AutoShutdown):
            raise SpecError(
                owner, "auto_shutdown", f"must be an AutoShutdown (got {self.auto_shutdown!r})"
            )
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise SpecError(owner, "backoff", f"must be a Backoff or None (got {self.backoff!r})")
        seen: set[str] = set()
        for child in self.children:
            if not isinstance(child, ChildSpec):
                raise SpecError(owner, "children", f"must hold ChildSpec objects (got {child!r})")
            if child.id in seen:
                raise SpecError(child.id, "id", f"duplicate child id in {owner}")
            seen.add(child.id)
            if child.significant and self.auto_shutdown is NEVER:
                raise SpecError(
                    child.id,
                    "significant",
                    f"a significant child needs auto_shutdown other than NEVER in {owner}",
                )


@attrs.frozen(kw_only=True)
class DynamicSupervisorSpec:
    """A supervisor of many children of one template, added at run time.

    OTP's ``simple_one_for_one`` / Elixir's ``DynamicSupervisor``: each
    ``start_child(*extra_args)`` starts the template with ``template.args +
    extra_args``; a crashed child is restarted alone; the restart intensity is
    counted across all children; all children are shut down together.

    Args:
        template: The spec every child is started from; its ``id`` prefixes the
            children's ids.
        max_children: ``None`` for no limit, else the most children at once.
        intensity: See :class:`SupervisorSpec`.
        period: See :class:`SupervisorSpec`.
        backoff: See :class:`SupervisorSpec`.
        name: See :class:`SupervisorSpec`.
    """

    template: ChildSpec
    max_children: int | None = None
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    backoff: Backoff | None = None
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        owner = self.name or "DynamicSupervisorSpec"
        if not isinstance(self.template, ChildSpec):
            raise SpecError(owner, "template", f"must be a ChildSpec (got {self.template!r})")
        if self.template.significant:
            raise SpecError(
                self.template.id, "significant", "dynamic children cannot be significant"
            )
        if self.max_children is not None and (
            not isinstance(self.max_children, int)
            or isinstance(self.max_children, bool)
            or self.max_children < 1
        ):
            raise SpecError(
                owner,
                "max_children",
                f"must be None or an integer >= 1 (got {self.max_children!r})",
            )
        _check_intensity(owner, self.intensity, self.period)
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise SpecError(owner, "backoff", f"must be a Backoff or None (got {self.backoff!r})")


AnySupervisorSpec: TypeAlias = SupervisorSpec | DynamicSupervisorSpec


def validate(spec: object) -> None:
    """Check a whole tree, OTP's ``check_childspecs``, for use in your own tests.

    Specs validate themselves on construction, so this mostly catches what
    construction cannot: objects of the wrong type and problems deep in a
    subtree, reported with the path to the offender (``root/db/conn``).

    Raises:
        SpecError: naming the offending child and field.
    """
    _validate(spec, "")


def _validate(spec: object, path: str) -> None:
    if isinstance(spec, ChildSpec):
        spec = SupervisorSpec(children=(spec,))
    if isinstance(spec, DynamicSupervisorSpec):
        children: tuple[ChildSpec, ...] = (spec.template,)
        name = spec.name or "dynamic"
    elif isinstance(spec, SupervisorSpec):
        children = spec.children
        name = spec.name or "supervisor"
    else:
        raise SpecError(path or "spec", "spec", f"not a supervisor spec: {spec!r}")
    here = path or name
    try:
        # re-run the spec's own checks: an object built around its
        # constructor (object.__setattr__, copy tricks) may have skipped them
        attrs.evolve(spec)
    except SpecError as error:
        raise SpecError(here, error.field, error.problem) from None
    for child in children:
        child_path = f"{here}/{child.id}"
        try:
            if isinstance(child.start, SupervisorSpec | DynamicSupervisorSpec):
                _validate(child.start, child_path)
            # re-run the child's own checks (an object built with attrs.evolve
            # or object.__setattr__ could have bypassed them)
            attrs.evolve(child)
        except SpecError as error:
            if error.owner.startswith(here):
                raise
            raise SpecError(f"{here}/{error.owner}", error.field, error.problem) from None
