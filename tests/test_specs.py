"""Tests for specs' declarations: defaults and validation on construction."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given

import specs
from specs import ChildSpec, DynamicSupervisorSpec, SpecError, SupervisorSpec
from specs._spec import accepts_task_status

from .strategies import child_specs


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
