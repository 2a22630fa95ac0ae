"""Testing strategies for Hypothesis-based tests (shared by every test module)."""

from __future__ import annotations

import enum
import functools
import math
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import attrs
import trio
from hypothesis import strategies as st

import specs
from supervisor.testing import Scenario
from supervisor.testing import scenarios as scenarios


async def _idle(*args: Any) -> None:
    """A child body for specs that are never run."""


child_ids = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=8)
restarts = st.sampled_from(list(specs.Restart))
shutdowns = st.one_of(
    st.just(specs.BRUTAL_KILL),
    st.just(specs.INFINITY),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
)


@st.composite
def child_specs(draw: st.DrawFn) -> specs.ChildSpec:
    """A valid worker ChildSpec."""
    restart = draw(restarts)
    return specs.ChildSpec(
        id=draw(child_ids), start=_idle, restart=restart, shutdown=draw(shutdowns)
    )


backoffs = st.builds(
    lambda initial, extra, jitter, base, reset: specs.Backoff(
        wait_initial=initial,
        wait_max=initial + extra,
        wait_jitter=jitter,
        wait_exp_base=base,
        reset_after=reset,
    ),
    st.floats(0, 100),
    st.floats(0, 1000),
    st.floats(0, 10),
    st.floats(1, 10),
    st.floats(0.001, 1000),
)

#: Restart times, newest first, as a supervisor records them.
restart_windows = st.lists(st.floats(0, 100), max_size=8).map(
    lambda times: tuple(sorted(times, reverse=True))
)


#: A few failure kinds, the field report's among them.
failure_kinds = st.sampled_from(["flood_wait", "proxy", "connection", "auth", "unknown"])

kind_rules = st.builds(
    specs.KindRule,
    decision=st.sampled_from(list(specs.Decision)),
    budget=st.none() | st.integers(0, 5),
    window=st.just(specs.INFINITY) | st.floats(0.5, 50),
    when_spent=st.sampled_from([specs.Decision.STAY_DOWN, specs.Decision.ESCALATE]),
    backoff=st.none() | backoffs,
)

failure_policies = st.builds(
    specs.FailurePolicy,
    rules=st.dictionaries(failure_kinds, kind_rules, max_size=4),
    default=kind_rules,
    backoff=st.none() | backoffs,
    reset_after=st.none() | st.floats(0.1, 100),
)

#: A child's failures in order: (kind, seconds since the one before, how long it ran).
failure_histories = st.lists(
    st.tuples(failure_kinds, st.floats(0, 30), st.floats(0, 120)), min_size=1, max_size=12
)


# ---------------------------------------------------------------- spec fuzzing
#
# Each ``*_cases()`` strategy draws ``(kwargs, bad)``: constructor arguments,
# and the names of the fields given an invalid value (empty: every value is
# valid). Good values cover what the docstrings in specs/_spec.py allow; bad
# values are wrong types, negatives, NaN/inf, huge ints, odd strings and the
# callables a child cannot run.

SpecCase = tuple[dict[str, Any], frozenset[str]]


class _AsyncCallable:
    """An object with an async ``__call__``, like ``workers.Worker``."""

    async def __call__(self, *args: Any) -> None:
        """Run."""

    async def method(self, *args: Any) -> None:
        """An async bound method."""

    def sync_method(self, *args: Any) -> None:
        """A sync bound method."""


class _SyncCallable:
    """An object with a sync ``__call__``."""

    def __call__(self, *args: Any) -> None:
        """Run, synchronously."""


def _sync(*args: Any) -> None:
    """A sync function."""


def _returns_coroutine(*args: Any) -> Any:
    """A sync function that returns a coroutine (trio would accept it)."""
    return _idle()


def _generator(*args: Any) -> Any:
    """A generator function."""
    yield


async def _async_generator(*args: Any) -> Any:
    """An async generator function."""
    yield


good_starts = st.sampled_from(
    [
        _idle,
        _AsyncCallable(),
        _AsyncCallable().method,
        functools.partial(_idle, 1),
        functools.partial(_AsyncCallable()),
        functools.partial(functools.partial(_idle, 1), 2),
    ]
)
bad_starts = st.sampled_from(
    [
        _sync,
        _returns_coroutine,
        _generator,
        _async_generator,
        lambda *args: None,
        lambda *args: _idle(),
        print,
        len,
        object,
        _AsyncCallable,
        _SyncCallable(),
        _AsyncCallable().sync_method,
        functools.partial(_sync),
        functools.partial(print, 1),
        time.sleep,
    ]
)

_enums = [*specs.Restart, *specs.Strategy, *specs.ChildKind, *specs.AutoShutdown, specs.BRUTAL_KILL]
_huge_ints = st.sampled_from([10**400, -(10**400), 2**1024, 10**308 * 10])
#: Values of every kind; each field's bad values are the ones of a wrong type.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    _huge_ints,
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.builds(object),
    st.sampled_from(_enums),
    st.complex_numbers(max_magnitude=10, allow_nan=False),
    st.just(Decimal("1.5")),
    st.just(Fraction(1, 3)),
    st.just(range(3)),
    st.just(...),
    bad_starts,
)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_not_reals = junk.filter(lambda v: not _is_real(v))
#: Strings that are not a valid child id or supervisor name.
_bad_names = st.one_of(
    st.just(""),
    st.sampled_from([" ", "\t", "a\nb", "a\x00", " a", "a ", "\u200b", "\ud800", "x\x1b[31m"]),
    st.text(max_size=3).map(lambda s: s + "\n"),
)
_bad_ids = st.one_of(
    junk.filter(lambda v: not isinstance(v, str)),
    _bad_names,
    st.sampled_from(["/", "a/b", "/a", "a/"]),
)
_printable = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
)
#: Child ids: printable, no '/', no surrounding whitespace (inner spaces are fine).
good_ids = st.one_of(
    child_ids,
    st.text(_printable.filter(lambda c: c != "/"), min_size=1, max_size=6),
    st.builds(lambda a, b: f"{a} {b}", child_ids, child_ids),
)
_good_seconds = st.one_of(
    st.floats(min_value=0, max_value=1e308),
    st.integers(0, 10**300),
)
_bad_seconds = st.one_of(
    _not_reals,
    st.floats(max_value=-1e-300),
    st.integers(max_value=-1),
    st.sampled_from([math.nan, -math.inf, -math.nan]),
    _huge_ints,
)
good_shutdowns = st.one_of(st.just(specs.BRUTAL_KILL), st.just(specs.INFINITY), _good_seconds)
bad_shutdowns = _bad_seconds.filter(lambda v: v is not specs.BRUTAL_KILL)
_bad_args = st.one_of(
    st.sampled_from([None, "ab", "", b"ab", 3, {"a": 1}, {1, 2}, range(2), ...]),
    st.builds(lambda: (x for x in (1, 2))),
    st.text(min_size=1, max_size=4),
)


def _bad_enum(kind: type[enum.Enum]) -> st.SearchStrategy[Any]:
    return st.one_of(
        junk.filter(lambda v: not isinstance(v, kind)),
        st.sampled_from([member.value for member in kind]),
    )


_bad_bools = junk.filter(lambda v: not isinstance(v, bool))
_good_intensity = st.integers(0, 10**9)
_bad_intensity = st.one_of(
    _not_reals.filter(lambda v: v is not None),
    st.floats(),
    st.integers(max_value=-1),
    st.integers(10**9 + 1, 10**30),
    _huge_ints,
)
_good_period = st.one_of(st.floats(min_value=1e-9, max_value=1e308), st.integers(1, 10**300))
_bad_period = st.one_of(
    _not_reals, st.floats(max_value=0), st.sampled_from([math.nan, math.inf]), _huge_ints
)


def _mutate(
    draw: st.DrawFn, good: dict[str, Any], bad: dict[str, st.SearchStrategy[Any]]
) -> SpecCase:
    """Replace none, one (most often) or two of ``good``'s fields by bad values."""
    count = draw(st.sampled_from([0, 1, 1, 1, 2]))
    chosen = draw(st.sets(st.sampled_from(sorted(bad)), min_size=count, max_size=count))
    kwargs = dict(good)
    for field in chosen:
        kwargs[field] = draw(bad[field])
    return kwargs, frozenset(chosen)


def _omit_defaults(draw: st.DrawFn, kwargs: dict[str, Any], required: set[str]) -> None:
    for field in sorted(set(kwargs) - required):
        if draw(st.booleans()):
            del kwargs[field]


@st.composite
def small_subtrees(draw: st.DrawFn) -> specs.AnySupervisorSpec:
    """A small valid supervisor spec, to be a child's ``start``."""
    children = draw(st.lists(child_specs(), max_size=2, unique_by=lambda c: c.id))
    if draw(st.booleans()):
        return specs.SupervisorSpec(children=children, name=draw(st.none() | good_ids))
    return specs.DynamicSupervisorSpec(template=specs.ChildSpec(id="t", start=_idle))


async def _async_classifier(error: BaseException) -> BaseException:
    return error


_bad_classifiers = junk.filter(lambda v: v is not None and not callable(v)) | st.just(
    _async_classifier
)
_bad_failure_policies = junk.filter(lambda v: v is not None) | st.just(specs.KindRule())


def bad_child_fields(*, subtree: bool = False) -> dict[str, st.SearchStrategy[Any]]:
    """Invalid values for each ``ChildSpec`` field."""
    return {
        "id": _bad_ids,
        "start": bad_starts | junk.filter(lambda v: not callable(v)),
        "args": st.lists(junk, min_size=1, max_size=2) if subtree else _bad_args,
        "restart": _bad_enum(specs.Restart),
        "shutdown": bad_shutdowns,
        "kind": _bad_enum(specs.ChildKind),
        "significant": _bad_bools,
        "classifier": _bad_classifiers,
    }


@st.composite
def child_spec_cases(draw: st.DrawFn) -> SpecCase:
    """``ChildSpec`` arguments, some fields possibly invalid."""
    subtree = draw(st.booleans())
    restart = draw(restarts)
    good: dict[str, Any] = {
        "id": draw(good_ids),
        "start": draw(small_subtrees() if subtree else good_starts),
        "args": draw(
            st.just(()) | st.just([])
            if subtree
            else st.lists(junk, max_size=3) | st.lists(junk, max_size=3).map(tuple)
        ),
        "restart": restart,
        "shutdown": draw(good_shutdowns),
        "kind": draw(st.sampled_from(list(specs.ChildKind))),
        "significant": draw(st.booleans()) and restart is not specs.PERMANENT,
    }
    _omit_defaults(draw, good, {"id", "start"})
    if good.get("restart", specs.PERMANENT) is specs.PERMANENT:
        good.pop("significant", None)
    bad = bad_child_fields(subtree=subtree)
    kwargs, wrong = _mutate(draw, good, bad)
    permanent = kwargs.get("restart", specs.PERMANENT) is specs.PERMANENT
    if permanent and "significant" not in wrong and draw(st.integers(0, 9)) == 0:
        # OTP: a permanent child cannot be significant
        kwargs["significant"], wrong = True, wrong | {"significant"}
    return kwargs, wrong


good_backoff_kwargs = st.builds(
    lambda initial, extra, jitter, base, reset: {
        "wait_initial": initial,
        "wait_max": initial + extra,
        "wait_jitter": jitter,
        "wait_exp_base": base,
        "reset_after": reset,
    },
    st.floats(0, 1e6) | st.integers(0, 10**6),
    st.floats(0, 1e6) | st.integers(0, 10**6),
    st.floats(0, 1e6) | st.integers(0, 10**6),
    st.floats(1, 1e3) | st.integers(1, 10),
    st.floats(1e-6, 1e9) | st.integers(1, 10**9) | st.just(specs.INFINITY),
)


@st.composite
def backoff_cases(draw: st.DrawFn) -> SpecCase:
    """``Backoff`` arguments, some fields possibly invalid."""
    good = draw(good_backoff_kwargs)
    _omit_defaults(draw, good, {"wait_initial", "wait_max"})
    if draw(st.booleans()):  # the defaults go together: wait_max >= wait_initial
        del good["wait_initial"], good["wait_max"]
    finite_bad = st.one_of(_bad_seconds, st.just(math.inf))
    bad: dict[str, st.SearchStrategy[Any]] = {
        "wait_initial": finite_bad,
        "wait_max": finite_bad | st.just(-1.0),
        "wait_jitter": finite_bad,
        "wait_exp_base": finite_bad | st.floats(0, 0.999) | st.just(-math.inf),
        "reset_after": _bad_seconds | st.just(0),
    }
    kwargs, wrong = _mutate(draw, good, bad)
    initial = kwargs.get("wait_initial", 0.5)
    if not wrong and _is_real(initial) and initial > 0 and draw(st.integers(0, 9)) == 0:
        kwargs["wait_max"], wrong = initial / 2, frozenset({"wait_max"})
    return kwargs, wrong


_good_backoffs = st.none() | good_backoff_kwargs.map(lambda kw: specs.Backoff(**kw))
_bad_backoffs = junk.filter(lambda v: v is not None)


def _significant() -> specs.ChildSpec:
    return specs.ChildSpec(id="s", start=_idle, restart=specs.TRANSIENT, significant=True)


def _duplicate_ids(children: list[specs.ChildSpec]) -> list[specs.ChildSpec]:
    return [*children, specs.ChildSpec(id=children[0].id, start=_idle)]


_bad_name_values = _bad_names | junk.filter(lambda v: v is not None and not isinstance(v, str))


def bad_supervisor_fields() -> dict[str, st.SearchStrategy[Any]]:
    """Invalid values for each ``SupervisorSpec`` field."""
    return {
        "children": st.one_of(
            junk.filter(lambda v: not isinstance(v, list | tuple)),
            st.just(specs.ChildSpec(id="a", start=_idle)),
            st.lists(junk, min_size=1, max_size=2),
            st.builds(lambda: iter(())),
        ),
        "strategy": _bad_enum(specs.Strategy),
        "intensity": _bad_intensity,
        "period": _bad_period,
        "auto_shutdown": _bad_enum(specs.AutoShutdown),
        "backoff": _bad_backoffs,
        "name": _bad_name_values,
        "classifier": _bad_classifiers,
        "failure_policy": _bad_failure_policies,
    }


def bad_dynamic_fields() -> dict[str, st.SearchStrategy[Any]]:
    """Invalid values for each ``DynamicSupervisorSpec`` field."""
    return {
        "template": junk.filter(lambda v: not isinstance(v, specs.ChildSpec)),
        "max_children": st.one_of(
            _not_reals.filter(lambda v: v is not None),
            st.floats(),
            st.integers(max_value=0),
            st.integers(10**9 + 1, 10**30),
            _huge_ints,
        ),
        "intensity": _bad_intensity,
        "period": _bad_period,
        "backoff": _bad_backoffs,
        "name": _bad_name_values,
        "classifier": _bad_classifiers,
        "failure_policy": _bad_failure_policies,
    }


@st.composite
def supervisor_spec_cases(draw: st.DrawFn) -> SpecCase:
    """``SupervisorSpec`` arguments, some fields possibly invalid."""
    children = draw(st.lists(child_specs(), max_size=3, unique_by=lambda c: c.id))
    good: dict[str, Any] = {
        "children": draw(st.sampled_from([children, tuple(children)])),
        "strategy": draw(st.sampled_from(list(specs.Strategy))),
        "intensity": draw(_good_intensity),
        "period": draw(_good_period),
        "auto_shutdown": draw(st.sampled_from(list(specs.AutoShutdown))),
        "backoff": draw(_good_backoffs),
        "name": draw(st.none() | good_ids | st.just("root/sub")),
    }
    _omit_defaults(draw, good, {"children"})
    bad = bad_supervisor_fields()
    kwargs, wrong = _mutate(draw, good, bad)
    if not wrong and draw(st.integers(0, 4)) == 0:
        if draw(st.booleans()) and children:
            kwargs["children"], wrong = _duplicate_ids(children), frozenset({"id"})
        elif kwargs.get("auto_shutdown", specs.NEVER) is specs.NEVER:
            kwargs["children"], wrong = [*children, _significant()], frozenset({"significant"})
    return kwargs, wrong


@st.composite
def dynamic_spec_cases(draw: st.DrawFn) -> SpecCase:
    """``DynamicSupervisorSpec`` arguments, some fields possibly invalid."""
    good: dict[str, Any] = {
        "template": draw(child_specs()),
        "max_children": draw(st.none() | st.integers(1, 10**9)),
        "intensity": draw(_good_intensity),
        "period": draw(_good_period),
        "backoff": draw(_good_backoffs),
        "name": draw(st.none() | good_ids),
    }
    _omit_defaults(draw, good, {"template"})
    bad = bad_dynamic_fields()
    kwargs, wrong = _mutate(draw, good, bad)
    if not wrong and draw(st.integers(0, 9)) == 0:  # a dynamic child cannot be significant
        kwargs["template"], wrong = _significant(), frozenset({"significant"})
    return kwargs, wrong


#: A tree and, if it was changed behind its constructors' back, the offender:
#: ``(path, field)``, with field ``"start"`` for a child that leads back to an
#: ancestor (a cycle). ``path`` ends with ``"/"`` when only its parent is known.
TreeCase = tuple[specs.AnySupervisorSpec, tuple[str, str] | None]


def _tamper(target: object, field: str, value: object) -> None:
    object.__setattr__(target, field, value)  # what frozen attrs forbid


@st.composite
def tree_cases(draw: st.DrawFn) -> TreeCase:
    """A valid tree up to four levels deep, possibly tampered with.

    Level ``k`` has the path ``root/sub/.../sub`` (k times ``sub``); each
    level but the last has a subtree child ``sub`` (the template, if the
    level is dynamic) next to its worker children.
    """
    depth = draw(st.integers(0, 3))
    levels: list[specs.AnySupervisorSpec] = []
    subs: list[specs.ChildSpec | None] = []
    node: specs.AnySupervisorSpec | None = None
    for level in reversed(range(depth + 1)):
        name = "root" if level == 0 else None
        workers = draw(st.lists(child_specs(), max_size=2, unique_by=lambda c: c.id))
        sub = None if node is None else specs.ChildSpec(id="sub", start=node)
        if sub is not None and draw(st.booleans()):
            node = specs.DynamicSupervisorSpec(template=sub, name=name)
        else:
            node = specs.SupervisorSpec(children=[*workers, *([sub] if sub else [])], name=name)
        levels.insert(0, node)
        subs.insert(0, sub)
    paths = ["/".join(["root", *["sub"] * k]) for k in range(depth + 1)]
    how = draw(st.sampled_from(["none", "supervisor", "child", "cycle"]))
    level = draw(st.integers(0, depth))
    spec, path = levels[level], paths[level]
    if how == "supervisor":
        dynamic = isinstance(spec, specs.DynamicSupervisorSpec)
        fields = bad_dynamic_fields() if dynamic else bad_supervisor_fields()
        fields.pop("name")  # a name is only a label
        field = draw(st.sampled_from(sorted(fields)))
        _tamper(spec, field, draw(fields[field]))
        return levels[0], (path, field)
    children = (spec.template,) if isinstance(spec, specs.DynamicSupervisorSpec) else spec.children
    if how == "child" and children:
        child = draw(st.sampled_from(children))
        fields = bad_child_fields(subtree=child.is_subtree)
        field = draw(st.sampled_from(sorted(fields)))
        _tamper(child, field, draw(fields[field]))
        return levels[0], (f"{path}/" if field == "id" else f"{path}/{child.id}", field)
    if how == "cycle":
        ancestor = draw(st.integers(0, level))
        sub = subs[level]
        if sub is None:
            assert isinstance(spec, specs.SupervisorSpec)
            loop = specs.ChildSpec(id="loop", start=levels[ancestor])
            _tamper(spec, "children", (*spec.children, loop))
            return levels[0], (f"{path}/loop", "start")
        _tamper(sub, "start", levels[ancestor])
        return levels[0], (f"{path}/sub", "start")
    return levels[0], None


__all__ = [
    "SpecCase",
    "TreeCase",
    "backoff_cases",
    "backoffs",
    "bad_child_fields",
    "bad_dynamic_fields",
    "bad_starts",
    "bad_supervisor_fields",
    "child_spec_cases",
    "child_specs",
    "dynamic_spec_cases",
    "failure_histories",
    "failure_kinds",
    "failure_policies",
    "good_ids",
    "good_shutdowns",
    "good_starts",
    "junk",
    "kind_rules",
    "restart_windows",
    "scenarios",
    "shutdowns",
    "supervisor_spec_cases",
    "tree_cases",
]


__all__ = [
    "backoffs",
    "child_specs",
    "failure_histories",
    "failure_kinds",
    "failure_policies",
    "kind_rules",
    "restart_windows",
    "scenarios",
    "shutdowns",
]


def without_start_failures(scenario: Scenario) -> Scenario:
    """The scenario with its scripted start failures left out.

    What runs on plain children (``run_scenario(..., plain=True)``): a child
    without ``task_status`` cannot fail to start.
    """
    actions = tuple(a for a in scenario.actions if a.op != "fail_starts")
    return attrs.evolve(scenario, actions=actions, init_fail=())


#: Scenarios for plain children: any tree and fault schedule, no start failures.
plain_scenarios = scenarios().map(without_start_failures)


# ------------------------------------------------ real trees, for fault schedules


async def _handshake_leaf(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A leaf that signals ready (a puppet stands in for it)."""


async def _plain_leaf() -> None:
    """A leaf without task_status (a puppet stands in for it)."""


_tree_backoffs = st.one_of(
    st.none(),
    st.builds(
        specs.Backoff,
        wait_initial=st.sampled_from([0.25, 0.5]),
        wait_max=st.sampled_from([1.0, 2.0]),
        wait_jitter=st.sampled_from([0.0, 0.3]),
        reset_after=st.sampled_from([1.0, 3.0, specs.INFINITY]),
    ),
)
_tree_shutdowns: st.SearchStrategy[specs.ShutdownValue] = st.sampled_from(
    [specs.BRUTAL_KILL, 0.5, 2.0, specs.INFINITY]
)


_kind_rules = st.builds(
    specs.KindRule,
    decision=st.sampled_from(list(specs.Decision)),
    budget=st.sampled_from([None, 0, 1, 2]),
    window=st.sampled_from([1.0, 5.0, specs.INFINITY]),
    when_spent=st.sampled_from([specs.Decision.STAY_DOWN, specs.Decision.ESCALATE]),
    backoff=_tree_backoffs,
)
_tree_policies = st.builds(
    specs.FailurePolicy,
    rules=st.dictionaries(st.sampled_from(["network", "auth"]), _kind_rules, max_size=2),
    default=_kind_rules,
    backoff=_tree_backoffs,
    reset_after=st.sampled_from([None, 2.0]),
)


@st.composite
def _leaf(draw: st.DrawFn, child_id: str, *, significant_ok: bool) -> specs.ChildSpec:
    restart = draw(restarts)
    significant = significant_ok and restart is not specs.PERMANENT and draw(st.booleans())
    return specs.ChildSpec(
        id=child_id,
        start=draw(st.sampled_from([_handshake_leaf, _handshake_leaf, _plain_leaf])),
        restart=restart,
        shutdown=draw(_tree_shutdowns),
        significant=significant,
    )


@st.composite
def real_trees(
    draw: st.DrawFn, depth: int = 3
) -> specs.SupervisorSpec | specs.DynamicSupervisorSpec:
    """A supervision tree of puppetable leaves: nested, dynamic, backoff, grace, significant."""
    intensity, period = draw(st.integers(0, 4)), draw(st.sampled_from([1, 2, 5]))
    backoff = draw(_tree_backoffs)
    if depth > 1 and draw(st.integers(0, 4)) == 0:
        template = draw(_leaf("w", significant_ok=False))
        return specs.DynamicSupervisorSpec(
            template=template,
            max_children=draw(st.sampled_from([None, 2])),
            intensity=intensity,
            period=period,
            backoff=backoff,
        )
    auto = draw(st.sampled_from(list(specs.AutoShutdown)))
    policy = draw(st.one_of(st.none(), st.none(), _tree_policies))
    children = []
    for i in range(draw(st.integers(1, 4))):
        if depth > 1 and draw(st.integers(0, 3)) == 0:
            sub = draw(real_trees(depth - 1))
            children.append(
                specs.ChildSpec(
                    id=f"s{i}", start=sub, restart=draw(restarts), shutdown=specs.INFINITY
                )
            )
        else:
            children.append(draw(_leaf(f"c{i}", significant_ok=auto is not specs.NEVER)))
    return specs.SupervisorSpec(
        children=children,
        strategy=draw(st.sampled_from(list(specs.Strategy))),
        intensity=intensity,
        period=period,
        auto_shutdown=auto,
        backoff=backoff,
        failure_policy=policy,
    )
