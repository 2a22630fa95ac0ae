"""Sphinx configuration: the API reference, built from the public packages' docstrings.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (what
``.ci/run`` does). Offline: no intersphinx, the default theme.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


def public_modules() -> list[str]:
    """Every public module and package under PACKAGES (no part of its name starts with ``_``)."""
    names: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not any(part.startswith("_") for part in parts):
                names.append(".".join(parts))
    return names


def _check_pages() -> None:
    """One page per public module: a module without ``api/<name>.rst`` fails the build."""
    pages = ROOT / "docs" / "api"
    missing = [name for name in public_modules() if not (pages / f"{name}.rst").exists()]
    if missing:
        msg = f"public modules without an API page (add docs/api/<name>.rst): {missing}"
        raise RuntimeError(msg)


_check_pages()
