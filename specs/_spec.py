"""Declaring supervision trees: frozen, self-validating specifications.

Nothing here imports trio: a spec is pure data that the ``supervisor`` runtime
executes.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, cast

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
#: Maps a child's exception to a typed failure; returning it unchanged means
#: no opinion (``workers.DEFAULT`` is one).
Classifier: TypeAlias = Callable[[BaseException], BaseException]

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


#: The most levels of supervisors in one tree (the root is level 1). Trees are
#: a few levels deep in practice; the bound keeps ``repr``, ``hash`` and ``==``
#: of a spec, and the runtime's nesting of supervisors, far from Python's
#: recursion limit.
MAX_DEPTH: Final = 100
#: The most specs in one tree, supervisors and children, a subtree shared by
#: several children counted once per use (the runtime runs it once per use):
#: sharing cannot make a small-looking spec an exponential tree.
MAX_TREE_SIZE: Final = 1_000_000
#: The largest ``intensity`` and ``max_children``: far beyond any real tree,
#: and small enough to catch an overflowed or mistyped number.
MAX_COUNT: Final = 10**9

_REAL = "an int or float, not a bool"
_REPR = reprlib.Repr()
_REPR.maxother = 100  # room for "<function <lambda> at 0x...>"
_REPR.maxstring = 60


def _show(value: object) -> str:
    """A short repr of ``value`` for an error message; never raises."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of {value.bit_length()} bits"
    try:
        return _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the SpecError
        return f"<{type(value).__name__} object>"


def _real(value: object) -> float | None:
    """``value`` as a float if it is an int or float (not a bool) a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond 1.8e308
        return None


def _check_seconds(
    owner: str, field: str, value: object, *, zero: bool = True, infinity: bool = False
) -> float:
    """Check a duration: finite seconds >= 0 (> 0 unless ``zero``), or INFINITY if allowed."""
    seconds = _real(value)
    if (
        seconds is None
        or math.isnan(seconds)
        or seconds < 0
        or (seconds == 0 and not zero)
        or (seconds == math.inf and not infinity)
    ):
        need = f"finite seconds {'>=' if zero else '>'} 0{' or INFINITY' if infinity else ''}"
        raise SpecError(owner, field, f"must be {need}: {_REAL} (got {_show(value)})")
    return seconds


def _check_count(owner: str, field: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        raise SpecError(
            owner,
            field,
            f"must be an int from {low} to {MAX_COUNT:_} (got {_show(value)})",
        )


def _check_shutdown(owner: str, value: object) -> None:
    if value is BRUTAL_KILL:
        return
    seconds = _real(value)
    if seconds is None or math.isnan(seconds) or seconds < 0:
        raise SpecError(
            owner,
            "shutdown",
            f"must be seconds >= 0 ({_REAL}), INFINITY or BRUTAL_KILL (got {_show(value)})",
        )


def _check_intensity(owner: str, intensity: object, period: object) -> None:
    _check_count(owner, "intensity", intensity, low=0)
    _check_seconds(owner, "period", period, zero=False)


def _name_problem(value: object, *, slash: bool) -> str | None:
    """Why ``value`` cannot be a child id (or, with ``slash``, a supervisor name)."""
    if not isinstance(value, str):
        return f"must be a str (got {_show(value)})"
    if not value:
        return "must not be empty"
    if not value.isprintable():
        return f"must be printable: no newlines, tabs or control characters (got {_show(value)})"
    if value != value.strip():
        return f"must not start or end with a space (got {_show(value)})"
    if not slash and "/" in value:
        return f"must not contain '/', which separates tree paths (got {_show(value)})"
    return None


def _check_name(owner: str, name: object) -> None:
    if name is not None:
        problem = _name_problem(name, slash=True)
        if problem is not None:
            raise SpecError(owner, "name", f"must be None or a child-id-like str: {problem}")


def _start_problem(start: object) -> str | None:
    """Why ``start`` cannot be a child's ``start``, or None if it can."""
    if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
        return None
    target = start
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):  # async def, async bound method
        return None
    if isinstance(target, type):
        return f"is a class, not an async callable: pass an instance (got {_show(start)})"
    if inspect.isasyncgenfunction(target):
        return f"is an async generator function, which cannot run as a child (got {_show(start)})"
    if inspect.isgeneratorfunction(target):
        return f"is a generator function, not an async function (got {_show(start)})"
    if not callable(target):
        return (
            "must be an async function, an object with an async __call__, a "
            f"functools.partial of one, or a supervisor spec (got {_show(start)})"
        )
    if not inspect.isroutine(target) and inspect.iscoroutinefunction(type(target).__call__):
        return None  # an object with an async __call__, such as a workers.Worker
    return (
        "is a sync callable; it would block the event loop or crash at every start: "
        f"make it an async def (got {_show(start)})"
    )


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

    Every value is an ``int`` or a ``float`` (not a ``bool``), finite unless
    said otherwise; anything else raises :class:`SpecError` naming the field.

    Args:
        wait_initial: Seconds before the first restart, >= 0.
        wait_max: The longest delay, >= ``wait_initial``.
        wait_jitter: Up to this many random seconds are added, >= 0, so many
            children restarting together spread out.
        wait_exp_base: The growth factor per consecutive failure, >= 1.
        reset_after: Seconds of healthy running that reset the count, > 0, or
            :data:`INFINITY` (never reset).
    """

    wait_initial: float = 0.5
    wait_max: float = 60.0
    wait_jitter: float = 1.0
    wait_exp_base: float = 2.0
    reset_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        initial = _check_seconds("Backoff", "wait_initial", self.wait_initial)
        if _check_seconds("Backoff", "wait_max", self.wait_max) < initial:
            raise SpecError(
                "Backoff",
                "wait_max",
                f"must be >= wait_initial={self.wait_initial!r} (got {self.wait_max!r})",
            )
        _check_seconds("Backoff", "wait_jitter", self.wait_jitter)
        if _check_seconds("Backoff", "wait_exp_base", self.wait_exp_base) < 1:
            raise SpecError(
                "Backoff", "wait_exp_base", f"must be >= 1 (got {self.wait_exp_base!r})"
            )
        _check_seconds("Backoff", "reset_after", self.reset_after, zero=False, infinity=True)


class Decision(enum.Enum):
    """What a supervisor does with a child's failure of one kind (a :class:`KindRule`)."""

    #: Restart it as its restart type says, after the failure's own delay
    #: (a FloodWait's seconds) or the kind's backoff.
    RESTART = "restart"
    #: Keep it, stopped, whatever its restart type: visible with its reason
    #: until ``restart_child`` brings it back (a revoked login, a conflict).
    STAY_DOWN = "stay_down"
    #: Give up now: the supervisor stops its children and fails to its parent,
    #: as when its restart intensity is exceeded.
    ESCALATE = "escalate"


def _kind_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value or not value.isprintable() or value != value.strip():
        return f"must be a non-empty printable str without surrounding spaces (got {_show(value)})"
    return None


def _check_decision(owner: str, field: str, value: object, allowed: tuple[Decision, ...]) -> None:
    if value not in allowed or not isinstance(value, Decision):
        names = " or ".join(f"Decision.{d.name}" for d in allowed)
        raise SpecError(owner, field, f"must be {names} (got {_show(value)})")


@attrs.frozen(kw_only=True)
class KindRule:
    """The decision and budget for one failure kind (see :class:`FailurePolicy`).

    Args:
        decision: :attr:`Decision.RESTART` (the default), :attr:`Decision.STAY_DOWN`
            or :attr:`Decision.ESCALATE`.
        budget: For ``RESTART``: at most this many failures of the kind
            (an ``int`` from 0 to :data:`MAX_COUNT`) within ``window`` seconds,
            counted since the child's last healthy run; the next one is met
            with ``when_spent``. ``None``: no budget (only intensity bounds it).
        window: The budget's window in seconds (> 0), or :data:`INFINITY`
            (consecutive failures, however far apart).
        when_spent: :attr:`Decision.STAY_DOWN` (the default) or
            :attr:`Decision.ESCALATE`: what a failure beyond the budget gets.
        backoff: The delays before this kind's restarts, the n-th consecutive
            failure of the kind waiting as :class:`Backoff` says for n;
            ``None``: the policy's.

    Raises:
        SpecError: naming ``KindRule`` and the first invalid field.
    """

    decision: Decision = Decision.RESTART
    budget: int | None = None
    window: float = INFINITY
    when_spent: Decision = Decision.STAY_DOWN
    backoff: Backoff | None = None

    def __attrs_post_init__(self) -> None:
        _check_decision("KindRule", "decision", self.decision, tuple(Decision))
        if self.budget is not None:
            _check_count("KindRule", "budget", self.budget, low=0)
        _check_seconds("KindRule", "window", self.window, zero=False, infinity=True)
        _check_decision(
            "KindRule", "when_spent", self.when_spent, (Decision.STAY_DOWN, Decision.ESCALATE)
        )
        _check_backoff("KindRule", self.backoff)


def _to_rules(value: object) -> object:
    # a mapping (or pairs) becomes sorted pairs, so the spec stays hashable;
    # anything else stays as given for __attrs_post_init__ to reject
    items = value.items() if isinstance(value, Mapping) else value
    if not isinstance(items, Iterable) or isinstance(items, str | bytes):
        return value
    try:
        pairs = [tuple(item) for item in items]
    except TypeError:
        return value
    if not all(len(pair) == 2 and isinstance(pair[0], str) for pair in pairs):
        return tuple(pairs)
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


@attrs.frozen(kw_only=True)
class FailurePolicy:
    """Decisions and budgets per failure kind: what a supervisor does with each failure.

    A failure declares its kind (``supervisor_failure_kind``, a str: the
    typed failures of ``workers`` do, see the README's failure table); any
    other exception is of kind ``"unknown"``. A normal return, or a
    ``Shutdown`` that declares no kind, is no failure: the restart type
    alone decides, as in OTP. For a failure, the rule of its kind (else
    ``default``) decides (:func:`specs.policy.judge_failure`): restart,
    stay down or escalate; a restart still counts toward intensity.

    Args:
        rules: ``{kind: KindRule}`` (a mapping, or ``(kind, rule)`` pairs);
            stored as pairs sorted by kind.
        default: The rule of every kind not in ``rules``.
        backoff: The delays of a kind whose rule has none; ``None``: the
            supervisor's ``backoff``.
        reset_after: Seconds of healthy running that clear every kind's
            budget and count a recovery as one that worked (> 0 or
            :data:`INFINITY`); ``None``: the policy's backoff's ``reset_after``,
            else the supervisor's, else the supervisor's ``period``.

    Raises:
        SpecError: naming ``FailurePolicy`` and the first invalid field.
    """

    rules: tuple[tuple[str, KindRule], ...] = attrs.field(default=(), converter=_to_rules)
    default: KindRule = attrs.Factory(KindRule)
    backoff: Backoff | None = None
    reset_after: float | None = None
    _by_kind: dict[str, KindRule] = attrs.field(
        init=False, factory=dict, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.rules, tuple):
            raise SpecError(
                "FailurePolicy",
                "rules",
                f"must be a mapping of failure kinds to KindRule (got {_show(self.rules)})",
            )
        for pair in self.rules:
            if len(pair) != 2:
                raise SpecError(
                    "FailurePolicy",
                    "rules",
                    f"must hold (kind, KindRule) pairs (got {_show(pair)})",
                )
            kind, rule = pair
            problem = _kind_problem(kind)
            if problem is not None:
                raise SpecError("FailurePolicy", "rules", f"a failure kind {problem}")
            if not isinstance(rule, KindRule):
                raise SpecError(
                    "FailurePolicy", "rules", f"{kind!r} must map to a KindRule (got {_show(rule)})"
                )
            if kind in self._by_kind:
                raise SpecError("FailurePolicy", "rules", f"{kind!r} is given twice")
            self._by_kind[kind] = rule
        if not isinstance(self.default, KindRule):
            raise SpecError(
                "FailurePolicy", "default", f"must be a KindRule (got {_show(self.default)})"
            )
        _check_backoff("FailurePolicy", self.backoff)
        if self.reset_after is not None:
            _check_seconds(
                "FailurePolicy", "reset_after", self.reset_after, zero=False, infinity=True
            )

    def rule(self, kind: str) -> KindRule:
        """The rule for failures of ``kind``: its own, else ``default``."""
        return self._by_kind.get(kind, self.default)


def _check_classifier(owner: str, classifier: object) -> None:
    if classifier is not None and (not callable(classifier) or _is_async(classifier)):
        raise SpecError(
            owner,
            "classifier",
            "must be None or a plain callable (exception) -> exception, such as "
            f"workers.DEFAULT (got {_show(classifier)})",
        )


def _is_async(value: object) -> bool:
    target = value
    while isinstance(target, functools.partial):
        target = target.func
    return inspect.iscoroutinefunction(target) or (
        not inspect.isroutine(target) and inspect.iscoroutinefunction(type(target).__call__)
    )


def _check_failure_policy(owner: str, policy: object) -> None:
    if policy is not None and not isinstance(policy, FailurePolicy):
        raise SpecError(
            owner, "failure_policy", f"must be a FailurePolicy or None (got {_show(policy)})"
        )


def _is_subtree(start: object) -> bool:
    return isinstance(start, SupervisorSpec | DynamicSupervisorSpec)


def _default_shutdown(self: ChildSpec) -> ShutdownValue:
    return INFINITY if _is_subtree(self.start) else DEFAULT_SHUTDOWN


def _default_kind(self: ChildSpec) -> ChildKind:
    return SUPERVISOR if _is_subtree(self.start) else WORKER


def _to_tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    # anything but a list or tuple stays as given, for __attrs_post_init__ to
    # reject naming the spec: tuple("abc") would explode a str into characters
    return tuple(value) if isinstance(value, list | tuple) else cast("tuple[Any, ...]", value)


@attrs.frozen(kw_only=True)
class ChildSpec:
    """One child of a supervisor.

    Every field is checked on construction; an invalid value raises
    :class:`SpecError` naming the child and the field.

    Args:
        id: A name unique among its siblings: a non-empty, printable ``str``
            (spaces inside are fine, not around it) without ``/``, which
            separates the parts of a tree path (``root/db/conn``).
        start: What to run. One of:

            - an async function (``async def``), or an async bound method;
            - an object with an ``async def __call__``, such as a
              :class:`workers.Worker`;
            - a :func:`functools.partial` of one of these;
            - a :class:`SupervisorSpec` or :class:`DynamicSupervisorSpec`,
              for a subtree.

            It is called with ``*args``. If it accepts ``task_status`` it
            counts as started once it calls ``task_status.started()`` (OTP's
            ``init`` returning); otherwise at once. A sync callable (a plain
            ``def``, a lambda, a builtin, a class), a generator function or an
            async generator function is rejected: it would block the event
            loop or fail at every start.
        args: Positional arguments for ``start``: a ``tuple`` or ``list``
            (stored as a tuple), never a ``str``, ``bytes`` or ``None``. A
            subtree takes none. Error messages show only its type, so it may
            hold secrets.
        restart: :data:`PERMANENT`, :data:`TRANSIENT` or :data:`TEMPORARY`.
        shutdown: Seconds the child gets to clean up once told to stop (an
            ``int`` or ``float`` >= 0), :data:`INFINITY` or
            :data:`BRUTAL_KILL`. Default 5 s for a worker, :data:`INFINITY`
            for a subtree.
        kind: :data:`WORKER` or :data:`SUPERVISOR`; derived from ``start``.
        significant: A ``bool``: whether the child's own exit can end its
            supervisor, under the supervisor's ``auto_shutdown``. A
            :data:`PERMANENT` child cannot be significant.
        classifier: ``None`` (its supervisor's), or a plain callable
            ``(exception) -> exception`` turning what the child raises into
            a typed failure (returning it unchanged: no opinion), such as
            ``workers.DEFAULT``. It overrides its supervisor's; for a subtree
            it is the subtree's, unless the subtree spec sets its own.

    Raises:
        SpecError: naming the child and the first invalid field. A subtree
            more than :data:`MAX_DEPTH` levels deep, or larger than
            :data:`MAX_TREE_SIZE` specs, is also refused.
    """

    id: str
    start: Callable[..., Any] | SupervisorSpec | DynamicSupervisorSpec
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_tuple)
    restart: Restart = PERMANENT
    shutdown: ShutdownValue = attrs.field(default=attrs.Factory(_default_shutdown, takes_self=True))
    kind: ChildKind = attrs.field(default=attrs.Factory(_default_kind, takes_self=True))
    significant: bool = False
    classifier: Classifier | None = None

    def __attrs_post_init__(self) -> None:
        problem = _name_problem(self.id, slash=False)
        if problem is not None:
            raise SpecError(_label(self.id), "id", problem)
        problem = _start_problem(self.start)
        if problem is not None:
            raise SpecError(self.id, "start", problem)
        if not isinstance(self.args, tuple):
            raise SpecError(
                self.id,
                "args",
                f"must be a tuple or a list (got {type(self.args).__name__})",
            )
        if self.args and self.is_subtree:
            raise SpecError(self.id, "args", "a subtree takes no arguments")
        if not isinstance(self.restart, Restart):
            raise SpecError(
                self.id,
                "restart",
                f"must be PERMANENT, TRANSIENT or TEMPORARY (got {_show(self.restart)})",
            )
        _check_shutdown(self.id, self.shutdown)
        if not isinstance(self.kind, ChildKind):
            raise SpecError(
                self.id, "kind", f"must be WORKER or SUPERVISOR (got {_show(self.kind)})"
            )
        if not isinstance(self.significant, bool):
            raise SpecError(
                self.id, "significant", f"must be a bool (got {_show(self.significant)})"
            )
        if self.significant and self.restart is PERMANENT:
            raise SpecError(
                self.id, "significant", "a PERMANENT child cannot be significant (OTP rule)"
            )
        _check_classifier(self.id, self.classifier)
        start = self.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec) and start._depth >= MAX_DEPTH:
            raise SpecError(
                self.id, "start", f"nests supervisors more than {MAX_DEPTH} levels deep"
            )

    @property
    def is_subtree(self) -> bool:
        """Whether ``start`` is a supervisor spec rather than a callable."""
        return _is_subtree(self.start)


def _measure(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    owner: str,
    field: str,
    children: Sequence[ChildSpec],
) -> None:
    """Record the depth and size of the tree rooted at ``spec`` (its children are checked)."""
    depth = size = 1
    for child in children:
        start = child.start
        if isinstance(start, SupervisorSpec | DynamicSupervisorSpec):
            depth = max(depth, 1 + start._depth)
            size += 1 + start._size
        else:
            size += 1
    if size > MAX_TREE_SIZE:
        raise SpecError(
            owner,
            field,
            f"the tree holds more than {MAX_TREE_SIZE:_} specs (a subtree shared by "
            "several children counts once per use)",
        )
    object.__setattr__(spec, "_depth", depth)
    object.__setattr__(spec, "_size", size)


@attrs.frozen(kw_only=True)
class SupervisorSpec:
    """A supervisor with a fixed, ordered list of children.

    Every field is checked on construction; an invalid value raises
    :class:`SpecError` naming the supervisor (its ``name``, else
    ``"SupervisorSpec"``) or the child, and the field.

    Args:
        children: The children, in start order: a ``list`` or ``tuple`` of
            :class:`ChildSpec` with distinct ids (stored as a tuple).
        strategy: :data:`ONE_FOR_ONE`, :data:`REST_FOR_ONE` or :data:`ONE_FOR_ALL`.
        intensity: At most this many restarts (an ``int`` from 0 to
            :data:`MAX_COUNT`) ...
        period: ... within any ``period`` seconds (an ``int`` or ``float``,
            finite, > 0); one more and the supervisor gives up: it stops its
            children and fails to its parent.
        auto_shutdown: :data:`NEVER`, :data:`ANY_SIGNIFICANT` or
            :data:`ALL_SIGNIFICANT`: whether significant children's exits end
            the supervisor. A significant child needs one other than NEVER.
        backoff: ``None`` restarts at once (OTP); a :class:`Backoff` delays
            each restart.
        name: How the supervisor is named in reports: ``None`` or a
            printable, non-empty ``str`` (``/`` allowed); a subtree defaults
            to its parent's name and child id.
        classifier: ``None``, or a plain callable ``(exception) ->
            exception`` applied to every child's exception (a child's own
            ``classifier`` wins), such as ``workers.DEFAULT``. ``None``
            inherits the parent supervisor's, for a subtree. Applied once,
            when the child's exit becomes its ``ExitReason``; never to
            ``Shutdown`` or a subtree's ``MaxIntensityReached``; one that
            raises is reported once and the exception stays as raised.
        failure_policy: ``None`` (OTP: the restart type alone decides), or
            a :class:`FailurePolicy`: a decision and budget per failure kind
            (:data:`FIELD_REPORT_POLICY` is the field report's table).

    Raises:
        SpecError: naming the supervisor or child and the first invalid
            field; also for a tree more than :data:`MAX_DEPTH` levels deep
            or of more than :data:`MAX_TREE_SIZE` specs.
    """

    children: tuple[ChildSpec, ...] = attrs.field(converter=_to_tuple)
    strategy: Strategy = ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    auto_shutdown: AutoShutdown = NEVER
    backoff: Backoff | None = None
    name: str | None = None
    classifier: Classifier | None = None
    failure_policy: FailurePolicy | None = None
    _depth: int = attrs.field(init=False, default=1, eq=False, repr=False)
    _size: int = attrs.field(init=False, default=1, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_name("SupervisorSpec", self.name)
        owner = self.name or "SupervisorSpec"
        if not isinstance(self.children, tuple):
            raise SpecError(
                owner,
                "children",
                f"must be a list or tuple of ChildSpec (got {_show(self.children)})",
            )
        for child in self.children:
            if not isinstance(child, ChildSpec):
                raise SpecError(
                    owner, "children", f"must hold ChildSpec objects (got {_show(child)})"
                )
        if not isinstance(self.strategy, Strategy):
            raise SpecError(
                owner,
                "strategy",
                f"must be ONE_FOR_ONE, REST_FOR_ONE or ONE_FOR_ALL (got {_show(self.strategy)})",
            )
        _check_intensity(owner, self.intensity, self.period)
        if not isinstance(self.auto_shutdown, AutoShutdown):
            raise SpecError(
                owner,
                "auto_shutdown",
                "must be NEVER, ANY_SIGNIFICANT or ALL_SIGNIFICANT "
                f"(got {_show(self.auto_shutdown)})",
            )
        _check_backoff(owner, self.backoff)
        _check_classifier(owner, self.classifier)
        _check_failure_policy(owner, self.failure_policy)
        seen: set[str] = set()
        for child in self.children:
            if child.id in seen:
                raise SpecError(child.id, "id", f"duplicate child id in {owner}")
            seen.add(child.id)
            if child.significant and self.auto_shutdown is NEVER:
                raise SpecError(
                    child.id,
                    "significant",
                    f"a significant child needs auto_shutdown other than NEVER in {owner}",
                )
        _measure(self, owner, "children", self.children)


def _check_backoff(owner: str, backoff: object) -> None:
    if backoff is not None and not isinstance(backoff, Backoff):
        raise SpecError(owner, "backoff", f"must be a Backoff or None (got {_show(backoff)})")


@attrs.frozen(kw_only=True)
class DynamicSupervisorSpec:
    """A supervisor of many children of one template, added at run time.

    OTP's ``simple_one_for_one`` / Elixir's ``DynamicSupervisor``: each
    ``start_child(*extra_args)`` starts the template with ``template.args +
    extra_args``; a crashed child is restarted alone; the restart intensity is
    counted across all children; all children are shut down together.

    Every field is checked on construction; an invalid value raises
    :class:`SpecError` naming the supervisor (its ``name``, else
    ``"DynamicSupervisorSpec"``) and the field.

    Args:
        template: The :class:`ChildSpec` every child is started from; its
            ``id`` prefixes the children's ids. It cannot be significant.
        max_children: ``None`` for no limit, else the most children at once
            (an ``int`` from 1 to :data:`MAX_COUNT`).
        intensity: See :class:`SupervisorSpec`.
        period: See :class:`SupervisorSpec`.
        backoff: See :class:`SupervisorSpec`.
        name: See :class:`SupervisorSpec`.
        classifier: See :class:`SupervisorSpec` (the template's own wins).
        failure_policy: See :class:`SupervisorSpec`.

    Raises:
        SpecError: naming the supervisor and the first invalid field.
    """

    template: ChildSpec
    max_children: int | None = None
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    backoff: Backoff | None = None
    name: str | None = None
    classifier: Classifier | None = None
    failure_policy: FailurePolicy | None = None
    _depth: int = attrs.field(init=False, default=1, eq=False, repr=False)
    _size: int = attrs.field(init=False, default=1, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_name("DynamicSupervisorSpec", self.name)
        owner = self.name or "DynamicSupervisorSpec"
        if not isinstance(self.template, ChildSpec):
            raise SpecError(owner, "template", f"must be a ChildSpec (got {_show(self.template)})")
        if self.template.significant:
            raise SpecError(
                self.template.id, "significant", "dynamic children cannot be significant"
            )
        if self.max_children is not None:
            _check_count(owner, "max_children", self.max_children, low=1)
        _check_intensity(owner, self.intensity, self.period)
        _check_backoff(owner, self.backoff)
        _check_classifier(owner, self.classifier)
        _check_failure_policy(owner, self.failure_policy)
        _measure(self, owner, "template", (self.template,))


AnySupervisorSpec: TypeAlias = SupervisorSpec | DynamicSupervisorSpec
_Node: TypeAlias = ChildSpec | SupervisorSpec | DynamicSupervisorSpec


def validate(spec: object) -> None:
    """Check a whole tree, OTP's ``check_childspecs``, for use in your own tests.

    Specs validate themselves on construction, so this catches what
    construction cannot: objects of the wrong type, and trees changed behind
    their constructors' back (``object.__setattr__`` on a frozen spec): a
    bad value deep in a subtree, a subtree that contains itself (found by
    identity), nesting beyond :data:`MAX_DEPTH`. It walks the tree without
    recursion, so any depth is reported, never a ``RecursionError``. The
    runtime calls it before running a tree.

    Args:
        spec: A :class:`SupervisorSpec`, :class:`DynamicSupervisorSpec` or
            :class:`ChildSpec`.

    Raises:
        SpecError: naming the path to the offender (``root/db/conn``) and
            the field.
    """
    if isinstance(spec, ChildSpec):
        root = _label(spec.id)
    elif isinstance(spec, SupervisorSpec | DynamicSupervisorSpec):
        default = "dynamic" if isinstance(spec, DynamicSupervisorSpec) else "supervisor"
        root = _label(spec.name) if spec.name is not None else default
    else:
        raise SpecError("spec", "spec", f"not a supervisor spec: {_show(spec)}")
    _rebuild(spec, root)


def _label(value: object) -> str:
    """``value`` as it names a spec in a message or path: as is if printable, else its repr."""
    return value if isinstance(value, str) and value.isprintable() and value else _show(value)


def _rebuild(root: _Node, root_path: str) -> None:
    """Build the tree again through its constructors, children first.

    Iterative (any depth), once per distinct spec (a shared subtree is not
    walked twice), and a spec met again below itself is a cycle.
    """
    built: dict[int, Any] = {}  # id() of an original -> its checked copy
    above: set[int] = set()  # the specs on the path from the root, by identity
    keep = [root]  # the originals, so no id() is reused while this runs
    # (spec, path, level of the supervisor it sits in, children already done)
    stack: list[tuple[_Node, str, int, bool]] = [(root, root_path, 1, False)]
    while stack:
        node, path, level, done = stack.pop()
        key = id(node)
        if done:
            above.discard(key)
            built[key] = _copy(node, path, built)
            continue
        if key in built:
            continue
        if key in above:
            raise SpecError(path, "start", "the tree contains itself (a cycle back to this spec)")
        above.add(key)
        keep.append(node)
        stack.append((node, path, level, True))
        parts = _parts(node, path, level)
        stack.extend(reversed(parts))


def _parts(node: _Node, path: str, level: int) -> list[tuple[_Node, str, int, bool]]:
    """The specs directly under ``node``, with their paths and levels."""
    if isinstance(node, ChildSpec):
        if not _is_subtree(node.start):
            return []
        if level >= MAX_DEPTH:
            raise SpecError(path, "start", f"nests supervisors more than {MAX_DEPTH} levels deep")
        return [(node.start, path, level + 1, False)]  # type: ignore[list-item]
    children: object = node.children if isinstance(node, SupervisorSpec) else (node.template,)
    if not isinstance(children, tuple | list):
        return []  # the copy names the field
    return [
        (child, f"{path}/{_label(child.id)}", level, False)
        for child in children
        if isinstance(child, ChildSpec)
    ]


def _copy(node: _Node, path: str, built: dict[int, Any]) -> _Node:
    """``node`` rebuilt on its checked parts; a SpecError is renamed to its path."""
    try:
        if isinstance(node, ChildSpec):
            return attrs.evolve(node, start=built.get(id(node.start), node.start))
        if isinstance(node, SupervisorSpec):
            children = node.children
            if isinstance(children, tuple | list):
                children = tuple(built.get(id(child), child) for child in children)
            return attrs.evolve(node, children=children)
        return attrs.evolve(node, template=built.get(id(node.template), node.template))
    except SpecError as error:
        own = isinstance(node, ChildSpec) or error.field in attrs.fields_dict(type(node))
        raise SpecError(
            path if own else f"{path}/{error.owner}", error.field, error.problem
        ) from None


#: The field report's table (see the README): budgets of consecutive failures
#: per kind (FloodWait 5, proxy 3, connection 3, temporary 3, unknown 2, a 429
#: as a FloodWait), a revoked login or a conflict stays down at once, and a
#: spent budget stays down (visible, for ``restart_child``); delays 1, 2, 4 …
#: capped at 300 s (with up to 1 s of jitter), a FloodWait's own seconds
#: first. A run of 60 s (the backoff's ``reset_after``) clears the budgets.
FIELD_REPORT_POLICY: Final = FailurePolicy(
    rules={
        "flood_wait": KindRule(budget=5),
        "rate_limited": KindRule(budget=5),
        "proxy": KindRule(budget=3),
        "connection": KindRule(budget=3),
        "temporary": KindRule(budget=3),
        "auth": KindRule(decision=Decision.STAY_DOWN),
        "conflict": KindRule(decision=Decision.STAY_DOWN),
        "unknown": KindRule(budget=2),
    },
    default=KindRule(budget=2),
    backoff=Backoff(wait_initial=1, wait_exp_base=2, wait_max=300),
)
