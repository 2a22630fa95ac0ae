"""Sphinx configuration: the API reference, built from the public packages' docstrings.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (what
``.ci/run`` does). Offline: no intersphinx, the default theme.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "trio-supervision"
author = "trio-supervision contributors"
copyright = "trio-supervision contributors"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path: list[str] = []

PACKAGES = ("specs", "supervisor", "workers")
logger = logging.getLogger(__name__)


def modules(package: str) -> list[tuple[str, bool]]:
    """Every module under ``package`` (not ``__main__``), with whether it is public."""
    found: list[tuple[str, bool]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            found.append((".".join(parts), not any(part.startswith("_") for part in parts)))
    return found


def public_modules() -> list[str]:
    """Every public module and package under PACKAGES (no part of its name starts with ``_``)."""
    return [name for package in PACKAGES for name, public in modules(package) if public]


def _load_public_names(app: Sphinx) -> None:
    """Resolve every name in each public ``__all__``, and give attribute comments a home.

    A public module loads some names on first use (``__getattr__``): resolving them
    here puts them where autodoc looks, and fails the build if one cannot load. Public
    names report the public package as their ``__module__``, so autodoc reads the
    ``#:`` comments of their attributes from that package's ``__init__.py``, where
    there are none: each public module's source analysis also gets those of its
    package's private modules, where the names are defined.
    """
    for package in PACKAGES:
        found = modules(package)
        private = [name for name, public in found if not public]
        for name in (name for name, public in found if public):
            module = importlib.import_module(name)
            for attribute in getattr(module, "__all__", ()):
                getattr(module, attribute)
            analyzer = ModuleAnalyzer.for_module(name)
            analyzer.analyze()
            for source in private:
                other = ModuleAnalyzer.for_module(source)
                other.analyze()
                for key, comment in other.attr_docs.items():
                    analyzer.attr_docs.setdefault(key, comment)


def _check_pages(app: Sphinx) -> None:
    """One page per public module: a warning (an error under ``-W``) for each one missing."""
    for name in public_modules():
        if not (ROOT / "docs" / "api" / f"{name}.rst").exists():
            logger.warning("public module %s has no API page: add docs/api/%s.rst", name, name)


def setup(app: Sphinx) -> None:
    app.connect("builder-inited", _check_pages)
    app.connect("builder-inited", _load_public_names)
