"""Tests of the public surface: what each package exports, and nothing private leaks."""

from __future__ import annotations

import importlib
import types
import typing

import pytest

PUBLIC_MODULES = [
    "specs",
    "supervisor",
    "supervisor.events",
    "supervisor.testing",
    "workers",
    "workers.testing",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    """Each public module has a sorted __all__ whose names all exist."""
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported)
    for attribute in exported:
        assert hasattr(module, attribute), attribute


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_only_reexport(name: str) -> None:
    """Public modules define nothing of their own: every public name comes from a private module."""
    module = importlib.import_module(name)
    for attribute in module.__all__:
        value = getattr(module, attribute)
        origin = getattr(value, "__module__", None)
        alias = isinstance(value, types.UnionType) or typing.get_origin(value) is not None
        if origin is None or alias or isinstance(value, types.ModuleType):
            continue  # modules and type aliases carry no defining module
        assert origin.rsplit(".", 1)[-1].startswith("_") or origin in {"typing", "builtins"}, (
            f"{name}.{attribute} is defined in {origin}"
        )


def test_exceptions_refine_builtins() -> None:
    """Each exception subclasses the builtin whose meaning it shares."""
    import specs
    import supervisor

    assert issubclass(specs.SpecError, ValueError)
    assert issubclass(supervisor.ChildNotFound, LookupError)
    for name in (
        "MaxIntensityReached",
        "FailedToStartChild",
        "ChildAlreadyStarted",
        "ChildAlreadyPresent",
        "ChildRunning",
        "ChildRestarting",
        "MaxChildrenReached",
        "SupervisorNotRunning",
    ):
        assert issubclass(getattr(supervisor, name), RuntimeError), name
        assert getattr(supervisor, name).__doc__, name
