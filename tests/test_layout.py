"""Tests of the layout: the loopback test servers stand apart from the runtime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTING = ROOT / "workers" / "testing"
RUNTIME_PACKAGES = ("specs", "supervisor", "workers")
# packaging, not runtime: the helper every public __init__ calls to set __module__
PACKAGING = frozenset({"specs._surface", "specs._surface.publish"})


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file imports, relative imports resolved against ``package``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            found.add(parent)
            found.update(f"{parent}.{alias.name}" for alias in node.names)
    return found


def _run(script: str) -> object:
    """Run ``script`` in a fresh interpreter at the repository's root; return its JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_runtime_never_imports_the_test_servers() -> None:
    """No module of specs, supervisor or workers (outside workers.testing) imports it."""
    offenders = []
    for name in RUNTIME_PACKAGES:
        for path in sorted((ROOT / name).rglob("*.py")):
            if TESTING in path.parents:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            if any(m.startswith("workers.testing") for m in _imported_modules(path, package)):
                offenders.append(module)
    assert offenders == []


def test_test_servers_import_only_public_runtime_names() -> None:
    """The servers import specs, supervisor and workers only through their public modules."""
    offenders = []
    for path in sorted(TESTING.glob("_*.py")):
        for module in _imported_modules(path, "workers.testing"):
            parts = module.split(".")
            if parts[0] not in RUNTIME_PACKAGES or module.startswith("workers.testing"):
                continue
            if path.name == "__init__.py" and module in PACKAGING:
                continue
            if any(part.startswith("_") for part in parts):
                offenders.append(f"{path.name}: {module}")
    assert offenders == []


def test_importing_the_runtime_leaves_the_test_servers_unloaded() -> None:
    """Importing every runtime package leaves workers.testing out of sys.modules."""
    loaded = _run(
        "import json, sys, specs, supervisor, supervisor.events, workers\n"
        "print(json.dumps('workers.testing' in sys.modules))"
    )
    assert loaded is False


def test_test_servers_other_than_mtproto_work_without_pyrogram() -> None:
    """Without Pyrogram, the Bot API, proxy and WebSocket servers import; MTProto's names raise."""
    outcome = _run(
        "import json, sys\n"
        "sys.modules['pyrogram'] = None  # as if the [pyrogram] extra were not installed\n"
        "import workers.testing as t\n"
        "usable = [t.open_botapi_server.__name__, t.open_connect_proxy.__name__,\n"
        "          t.open_websocket_test_server.__name__, t.open_tcp_relay.__name__]\n"
        "try:\n"
        "    t.MTProtoServer\n"
        "except ImportError:\n"
        "    refused = True\n"
        "else:\n"
        "    refused = False\n"
        "print(json.dumps([usable, refused]))"
    )
    assert outcome == [
        [
            "open_botapi_server",
            "open_connect_proxy",
            "open_websocket_test_server",
            "open_tcp_relay",
        ],
        True,
    ]


def test_mtproto_names_load_pyrogram_on_first_use() -> None:
    """Importing workers.testing does not import Pyrogram; naming MTProtoServer does."""
    outcome = _run(
        "import json, sys\n"
        "import workers.testing as t\n"
        "before = 'pyrogram' in sys.modules\n"
        "t.MTProtoServer\n"
        "print(json.dumps([before, 'pyrogram' in sys.modules]))"
    )
    assert outcome == [False, True]
