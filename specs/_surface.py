"""One helper for every public package: its re-exported names report it as their home.

Lives in ``specs`` (the package everything else may import) so that ``specs``,
``supervisor`` and ``workers`` share it; it is packaging, not spec logic.
"""

from __future__ import annotations

import types
from collections.abc import Mapping


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def publish(module_name: str, namespace: Mapping[str, object]) -> None:
    """Point ``__module__`` of each public class and function at ``module_name``.

    Tracebacks, reprs, pickles and the API reference then show
    ``supervisor.MaxIntensityReached``, not ``supervisor._exceptions...``. As
    trio's ``fixup_module_metadata``: call it at the end of a public
    ``__init__.py`` with ``(__name__, globals())``. A name already published by
    another public module (``supervisor.Event``, also in ``supervisor.events``)
    keeps the first home; names from other distributions are left alone.
    """
    top = module_name.partition(".")[0]
    for name, value in namespace.items():
        if name.startswith("_") or not isinstance(value, type | types.FunctionType):
            continue
        origin = getattr(value, "__module__", None) or ""
        if origin.partition(".")[0] == top and _private(origin):
            value.__module__ = module_name
