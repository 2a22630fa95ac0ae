"""Tests for specs' declarations: defaults and validation on construction."""

from __future__ import annotations

import math
import sys
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import specs
from specs import ChildSpec, DynamicSupervisorSpec, SpecError, SupervisorSpec
from specs._spec import MAX_DEPTH, accepts_task_status

from .strategies import (
    SpecCase,
    TreeCase,
    backoff_cases,
    bad_starts,
    child_spec_cases,
    child_specs,
    dynamic_spec_cases,
    good_starts,
    supervisor_spec_cases,
    tree_cases,
)


async def work(*args: Any) -> None:
    """A child body."""


async def ready(task_status: Any = None) -> None:
    """A child body with the start handshake."""


def test_child_defaults() -> None:
    """A worker child is permanent, with 5 s of shutdown grace, not significant."""
    child = ChildSpec(id="a", start=work)
    assert (child.restart, child.shutdown, child.kind, child.significant, child.args) == (
        specs.PERMANENT,
        5.0,
        specs.WORKER,
        False,
        (),
    )


def test_subtree_defaults() -> None:
    """A subtree child is a SUPERVISOR with INFINITY shutdown, as in OTP."""
    child = ChildSpec(id="sub", start=SupervisorSpec(children=()))
    assert (child.kind, child.shutdown, child.is_subtree) == (specs.SUPERVISOR, math.inf, True)


def test_supervisor_defaults_are_elixirs() -> None:
    """Defaults: one_for_one, 3 restarts in 5 seconds, no auto shutdown, no backoff."""
    spec = SupervisorSpec(children=())
    assert (spec.strategy, spec.intensity, spec.period, spec.auto_shutdown, spec.backoff) == (
        specs.ONE_FOR_ONE,
        3,
        5.0,
        specs.NEVER,
        None,
    )


def test_args_become_a_tuple() -> None:
    """A list of arguments is stored as a tuple, so the spec stays immutable."""
    assert ChildSpec(id="a", start=work, args=[1, 2]).args == (1, 2)


def test_specs_are_frozen() -> None:
    """A spec cannot be changed after construction."""
    child = ChildSpec(id="a", start=work)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        child.id = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "owner", "field"),
    [
        ({"id": ""}, "''", "id"),
        ({"id": 3}, "3", "id"),
        ({"id": "a/b"}, "a/b", "id"),
        ({"start": "not callable"}, "a", "start"),
        ({"restart": "permanent"}, "a", "restart"),
        ({"shutdown": -1}, "a", "shutdown"),
        ({"shutdown": math.nan}, "a", "shutdown"),
        ({"shutdown": "5"}, "a", "shutdown"),
        ({"shutdown": True}, "a", "shutdown"),
        ({"kind": "worker"}, "a", "kind"),
        ({"significant": 1}, "a", "significant"),
        ({"significant": True}, "a", "significant"),
    ],
)
def test_bad_child_spec(kwargs: dict[str, Any], owner: str, field: str) -> None:
    """Each invalid child field raises SpecError naming the child and the field."""
    arguments: dict[str, Any] = {"id": "a", "start": work, **kwargs}
    with pytest.raises(SpecError) as caught:
        ChildSpec(**arguments)
    assert (caught.value.owner, caught.value.field) == (owner, field)
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_subtree_takes_no_args() -> None:
    """A subtree child with args is rejected."""
    with pytest.raises(SpecError, match="args"):
        ChildSpec(id="s", start=SupervisorSpec(children=()), args=(1,))


def test_duplicate_ids() -> None:
    """Two children with one id are rejected, naming the id."""
    with pytest.raises(SpecError, match="duplicate") as caught:
        SupervisorSpec(children=[ChildSpec(id="x", start=work), ChildSpec(id="x", start=work)])
    assert caught.value.owner == "x"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"intensity": -1}, "intensity"),
        ({"intensity": 1.5}, "intensity"),
        ({"intensity": True}, "intensity"),
        ({"period": 0}, "period"),
        ({"period": -5}, "period"),
        ({"period": math.inf}, "period"),
        ({"strategy": "one_for_one"}, "strategy"),
        ({"auto_shutdown": "never"}, "auto_shutdown"),
        ({"backoff": 1.0}, "backoff"),
        ({"children": ChildSpec(id="a", start=work)}, "children"),
        ({"children": ["not a spec"]}, "children"),
    ],
)
def test_bad_supervisor_spec(kwargs: dict[str, Any], field: str) -> None:
    """Each invalid supervisor field raises SpecError naming the field."""
    arguments: dict[str, Any] = {"children": (), "name": "root", **kwargs}
    with pytest.raises(SpecError) as caught:
        SupervisorSpec(**arguments)
    assert caught.value.field == field


def test_significant_needs_auto_shutdown() -> None:
    """A significant child under auto_shutdown=NEVER is rejected (OTP's bad_combination)."""
    child = ChildSpec(id="t", start=work, restart=specs.TRANSIENT, significant=True)
    with pytest.raises(SpecError, match="auto_shutdown"):
        SupervisorSpec(children=[child])
    assert SupervisorSpec(children=[child], auto_shutdown=specs.ANY_SIGNIFICANT).children == (
        child,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_children": 0}, "max_children"),
        ({"max_children": 2.0}, "max_children"),
        ({"intensity": -1}, "intensity"),
        ({"period": 0}, "period"),
        ({"template": "x"}, "template"),
    ],
)
def test_bad_dynamic_spec(kwargs: dict[str, Any], field: str) -> None:
    """Each invalid dynamic supervisor field raises SpecError naming the field."""
    arguments: dict[str, Any] = {"template": ChildSpec(id="w", start=work), **kwargs}
    with pytest.raises(SpecError) as caught:
        DynamicSupervisorSpec(**arguments)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wait_initial": -1},
        {"wait_initial": 2, "wait_max": 1},
        {"wait_jitter": -0.1},
        {"wait_exp_base": 0.5},
        {"reset_after": 0},
        {"wait_initial": math.nan},
    ],
)
def test_bad_backoff(kwargs: dict[str, Any]) -> None:
    """Each invalid backoff parameter raises SpecError naming it."""
    with pytest.raises(SpecError) as caught:
        specs.Backoff(**kwargs)
    assert caught.value.field in kwargs


def test_validate_names_the_path_in_a_subtree() -> None:
    """validate() reports a bad child deep in a tree with its path."""
    inner = SupervisorSpec(children=[ChildSpec(id="conn", start=work)], name="db")
    broken = ChildSpec(id="conn", start=work)
    object.__setattr__(broken, "shutdown", -3)
    object.__setattr__(inner, "children", (broken,))
    root = SupervisorSpec(children=[ChildSpec(id="db", start=inner)], name="root")
    with pytest.raises(SpecError) as caught:
        specs.validate(root)
    assert caught.value.owner == "root/db/conn"
    assert caught.value.field == "shutdown"


def test_validate_rejects_non_specs() -> None:
    """validate() rejects an object that is not a spec."""
    with pytest.raises(SpecError, match="not a supervisor spec"):
        specs.validate({"children": []})


@given(child_specs())
def test_validate_accepts_valid_specs(child: ChildSpec) -> None:
    """Any valid child spec passes validate(), alone or in a tree."""
    specs.validate(SupervisorSpec(children=[child]))


def test_accepts_task_status() -> None:
    """A start function that takes task_status uses the handshake; others do not."""
    assert accepts_task_status(ready)
    assert not accepts_task_status(work)
    assert not accepts_task_status(print)


def test_specs_do_not_import_trio() -> None:
    """specs is pure: importing it does not import trio."""
    import subprocess
    import sys

    code = "import sys, specs; print('trio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------ the fuzz
#
# Each outcome function returns None when a spec constructor (or validate)
# did the right thing with a case, else a short description of the
# counterexample, so a counting run can group them by kind.

FUZZ = settings(max_examples=300, deadline=None)


def _owner_of(cls: type, kwargs: dict[str, Any], field: str) -> str | None:
    """The owner a SpecError about ``field`` must name, when it is known."""
    if cls is specs.Backoff:
        return "Backoff"
    if cls is ChildSpec:
        return str(kwargs["id"])
    if field not in attrs.fields_dict(cls):
        return None  # a child's field (duplicate id, significant): the child is named
    return kwargs.get("name") or cls.__name__


def constructor_outcome(cls: type, case: SpecCase) -> str | None:
    """None if ``cls(**kwargs)`` raised SpecError exactly when a field was bad."""
    kwargs, wrong = case
    try:
        spec = cls(**kwargs)
    except SpecError as error:
        if not wrong:
            return f"valid {error.field} rejected"
        if error.field not in wrong:
            return f"SpecError names {error.field!r}, not one of {sorted(wrong)}"
        owner = None if {"id", "name"} & wrong else _owner_of(cls, kwargs, error.field)
        if owner is not None and error.owner != owner:
            return f"SpecError names {error.owner!r}, not {owner!r}"
        if repr(error.field) not in str(error) or str(error.owner) not in str(error):
            return "message does not name the owner and field"
        return None
    except Exception as error:
        return type(error).__name__
    if wrong:
        return f"invalid {'+'.join(sorted(wrong))} accepted"
    try:
        if cls is not specs.Backoff:
            specs.validate(spec)
        repr(spec)
    except Exception as error:
        return f"valid spec: {type(error).__name__} from validate/repr"
    return None


def tree_outcome(case: TreeCase) -> str | None:
    """None if validate() rejected exactly the tampered tree, naming the offender."""
    root, offender = case
    try:
        specs.validate(root)
    except SpecError as error:
        if offender is None:
            return f"valid tree rejected ({error.field})"
        path, field = offender
        if error.field != field:
            return f"SpecError names {error.field!r}, not {field!r}"
        if not (error.owner.startswith(path) if path.endswith("/") else error.owner == path):
            return f"SpecError names {error.owner!r}, not {path!r}"
        return None
    except Exception as error:
        return f"{type(error).__name__} from validate"
    if offender is not None:
        return f"tampered {offender[1]} accepted"
    return None


#: Each spec class and the strategy of its constructor's arguments.
CONSTRUCTORS: dict[type, st.SearchStrategy[SpecCase]] = {
    ChildSpec: child_spec_cases(),
    SupervisorSpec: supervisor_spec_cases(),
    DynamicSupervisorSpec: dynamic_spec_cases(),
    specs.Backoff: backoff_cases(),
}


@pytest.mark.parametrize("cls", list(CONSTRUCTORS), ids=lambda cls: cls.__name__)
@FUZZ
@given(data=st.data())
def test_fuzz_constructor(cls: type, data: st.DataObject) -> None:
    """A spec is built from valid values, and any invalid one is a SpecError naming it."""
    assert constructor_outcome(cls, data.draw(CONSTRUCTORS[cls])) is None


@FUZZ
@given(tree_cases())
def test_fuzz_validate(case: TreeCase) -> None:
    """validate() passes a valid tree and names the field changed behind a constructor's back."""
    assert tree_outcome(case) is None


# ------------------------------------------------ what a start may be, and args


@given(good_starts)
def test_async_starts_are_accepted(start: Any) -> None:
    """An async function or method, an object with an async __call__, or a partial of one."""
    assert ChildSpec(id="a", start=start).start is start


def test_a_worker_object_is_a_valid_start() -> None:
    """A workers.Worker is an object with an async __call__: its child_spec() is valid."""
    from workers import Worker

    worker = Worker()
    specs.validate(worker.child_spec("w"))
    specs.validate(worker.reconnecting_child_spec("r"))


@given(bad_starts)
def test_sync_starts_are_rejected(start: Any) -> None:
    """A sync callable, class, generator or async generator function cannot be a start."""
    with pytest.raises(SpecError) as caught:
        ChildSpec(id="a", start=start)
    assert (caught.value.owner, caught.value.field) == ("a", "start")


@pytest.mark.parametrize("args", ["token:123", b"ab", None, 3, {"a": 1}, range(2)])
def test_args_must_be_a_tuple_or_list(args: Any) -> None:
    """args is a tuple or list; the message shows only the type (args may hold secrets)."""
    with pytest.raises(SpecError) as caught:
        ChildSpec(id="a", start=work, args=args)
    assert caught.value.field == "args"
    assert type(args).__name__ in str(caught.value)
    assert "token:123" not in str(caught.value)


def test_a_huge_int_is_named_not_printed() -> None:
    """10**5000 seconds is a SpecError that gives the number's size, not its 5,000 digits."""
    with pytest.raises(SpecError, match="bits") as caught:
        ChildSpec(id="a", start=work, shutdown=10**5000)
    assert caught.value.field == "shutdown"


def test_a_broken_repr_does_not_hide_the_error() -> None:
    """A value whose repr raises still gets its SpecError."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError

    with pytest.raises(SpecError, match="Broken"):
        SupervisorSpec(children=(), intensity=Broken())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", " root", "a\nb", 3])
def test_bad_supervisor_names(name: Any) -> None:
    """A supervisor name is None or a printable, non-empty str."""
    with pytest.raises(SpecError) as caught:
        SupervisorSpec(children=(), name=name)
    assert caught.value.field == "name"


def test_validate_accepts_a_lone_significant_child() -> None:
    """validate() of a single child checks the child, not a supervisor it is not in yet."""
    specs.validate(ChildSpec(id="t", start=work, restart=specs.TRANSIENT, significant=True))


# ---------------------------------------------------- cycles and deep trees


def _chain(levels: int) -> SupervisorSpec:
    """A chain of supervisors ``levels`` deep, built behind the constructors' back."""
    root = bottom = SupervisorSpec(children=(), name="root")
    for _ in range(levels - 1):
        below = SupervisorSpec(children=())
        object.__setattr__(bottom, "children", (ChildSpec(id="sub", start=below),))
        bottom = below
    return root


def _self_containing() -> SupervisorSpec:
    root = SupervisorSpec(children=(), name="root")
    object.__setattr__(root, "children", (ChildSpec(id="me", start=root),))
    return root


def _two_cycle() -> SupervisorSpec:
    inner = SupervisorSpec(children=())
    root = SupervisorSpec(children=[ChildSpec(id="inner", start=inner)], name="root")
    object.__setattr__(inner, "children", (ChildSpec(id="back", start=root),))
    return root


def _dynamic_cycle() -> DynamicSupervisorSpec:
    root = DynamicSupervisorSpec(template=ChildSpec(id="w", start=work), name="root")
    object.__setattr__(root.template, "start", root)
    return root


def _sync_start() -> SupervisorSpec:
    child = ChildSpec(id="blocks", start=work)
    object.__setattr__(child, "start", __import__("time").sleep)
    return SupervisorSpec(children=[child], name="root")


@pytest.mark.parametrize(
    ("build", "owner", "field"),
    [
        (_self_containing, "root/me", "start"),
        (_two_cycle, "root/inner/back", "start"),
        (_dynamic_cycle, "root/w", "start"),
        (lambda: _chain(2000), "/".join(["root", *["sub"] * MAX_DEPTH]), "start"),
        (_sync_start, "root/blocks", "start"),
    ],
    ids=["self-containing", "two-cycle", "dynamic-cycle", "2000-deep", "sync-start"],
)
def test_validate_rejects_trees_changed_behind_the_constructors(
    build: Any, owner: str, field: str
) -> None:
    """A cycle (found by identity), 2,000 levels or a sync start: a SpecError naming the path."""
    with pytest.raises(SpecError) as caught:
        specs.validate(build())
    assert (caught.value.owner, caught.value.field) == (owner, field)


@pytest.mark.parametrize("build", [_self_containing, _two_cycle, _dynamic_cycle, _sync_start])
async def test_open_supervisor_refuses_an_invalid_tree(build: Any) -> None:
    """open_supervisor raises the SpecError before any child runs (no runaway nesting)."""
    from supervisor import open_supervisor

    with pytest.raises(SpecError):
        async with open_supervisor(build()):
            pytest.fail("the tree ran")


async def test_open_supervisor_refuses_a_2000_level_tree() -> None:
    """A 2,000-level tree is refused at once, not run into the recursion limit."""
    from supervisor import open_supervisor

    with pytest.raises(SpecError, match="levels deep"):
        async with open_supervisor(_chain(2000)):
            pytest.fail("the tree ran")
    await trio.lowlevel.checkpoint()


def test_nesting_is_bounded_on_construction() -> None:
    """A tree MAX_DEPTH supervisors deep is built; one more level is a SpecError."""
    spec = SupervisorSpec(children=())
    for _ in range(MAX_DEPTH - 1):
        spec = SupervisorSpec(children=[ChildSpec(id="sub", start=spec)])
    with pytest.raises(SpecError, match="levels deep") as caught:
        ChildSpec(id="sub", start=spec)
    assert (caught.value.owner, caught.value.field) == ("sub", "start")


def test_the_deepest_tree_survives_repr_hash_and_eq() -> None:
    """At MAX_DEPTH, repr, hash, == and validate work, even from a deep stack."""

    def build() -> SupervisorSpec:
        spec = SupervisorSpec(children=())
        for _ in range(MAX_DEPTH - 1):
            spec = SupervisorSpec(children=[ChildSpec(id="sub", start=spec)])
        return spec

    def at_depth(frames: int) -> None:
        if frames:
            return at_depth(frames - 1)
        one, two = build(), build()
        assert one == two
        assert hash(one) == hash(two)
        assert repr(one) == repr(two)
        specs.validate(one)
        return None

    at_depth(sys.getrecursionlimit() // 3)


def test_shared_subtrees_cannot_make_an_exponential_tree() -> None:
    """Sharing a subtree between two children per level is bounded by MAX_TREE_SIZE."""
    spec = SupervisorSpec(children=())
    with pytest.raises(SpecError, match="more than") as caught:
        for _ in range(40):  # 2**40 specs, if it were allowed
            spec = SupervisorSpec(
                children=[ChildSpec(id="a", start=spec), ChildSpec(id="b", start=spec)]
            )
    assert caught.value.field == "children"


def test_a_shared_subtree_is_validated_once() -> None:
    """validate() walks each distinct spec once: a wide shared DAG is quick."""
    spec = SupervisorSpec(children=())
    for _ in range(16):  # 2**18 specs counted with sharing, 49 distinct
        spec = SupervisorSpec(
            children=[ChildSpec(id="a", start=spec), ChildSpec(id="b", start=spec)]
        )
    specs.validate(spec)


# ------------------------------------------- classifiers and failure policies


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"decision": "restart"}, "decision"),
        ({"budget": -1}, "budget"),
        ({"budget": True}, "budget"),
        ({"window": 0}, "window"),
        ({"window": math.nan}, "window"),
        ({"when_spent": specs.Decision.RESTART}, "when_spent"),
        ({"backoff": 3}, "backoff"),
    ],
)
def test_kind_rule_rejects_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    """KindRule names the field it refuses."""
    with pytest.raises(SpecError) as caught:
        specs.KindRule(**kwargs)
    assert (caught.value.owner, caught.value.field) == ("KindRule", field)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rules": {"": specs.KindRule()}}, "rules"),
        ({"rules": {"x": 3}}, "rules"),
        ({"rules": 5}, "rules"),
        ({"rules": [("a", specs.KindRule()), ("a", specs.KindRule())]}, "rules"),
        ({"default": None}, "default"),
        ({"backoff": "fast"}, "backoff"),
        ({"reset_after": 0}, "reset_after"),
    ],
)
def test_failure_policy_rejects_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    """FailurePolicy names the field it refuses."""
    with pytest.raises(SpecError) as caught:
        specs.FailurePolicy(**kwargs)
    assert (caught.value.owner, caught.value.field) == ("FailurePolicy", field)


def test_failure_policy_is_hashable_and_its_rules_sorted() -> None:
    """A policy given a dict stores sorted pairs, so specs holding it stay hashable."""
    policy = specs.FailurePolicy(rules={"b": specs.KindRule(), "a": specs.KindRule(budget=1)})
    assert [kind for kind, _ in policy.rules] == ["a", "b"]
    assert policy.rule("a").budget == 1
    assert policy.rule("zzz") is policy.default
    spec = SupervisorSpec(children=[], failure_policy=policy)
    assert hash(spec) == hash(SupervisorSpec(children=[], failure_policy=policy))


def test_an_async_classifier_is_refused() -> None:
    """A classifier is a plain callable: an async def would never be awaited."""

    async def classify(error: BaseException) -> BaseException:
        return error

    with pytest.raises(SpecError) as caught:
        ChildSpec(id="c", start=_idle_child, classifier=classify)  # type: ignore[arg-type]
    assert caught.value.field == "classifier"


async def _idle_child() -> None:
    """A child that does nothing."""
