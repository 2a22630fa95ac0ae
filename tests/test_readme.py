"""Tests for README.md: every code block runs as written, every command exists.

How a block is run:

- Each ```python block is written to a file of its own and run with this
  interpreter in a subprocess, in an empty directory, with the repository on
  ``PYTHONPATH``. It must exit 0 by itself: a block is a complete program
  (imports, ``async def main()`` + ``trio.run``, stand-ins defined in the
  block, loopback servers it starts itself).
- A block that calls ``supervisor.run(...)`` is a whole program that runs until
  it is signalled, as under systemd. The test gives it a ``$NOTIFY_SOCKET``,
  waits for the ``READY=1`` that ``supervisor.run`` sends once every child is
  up, then sends SIGINT and expects ``EXIT_OK`` (0) after the ordered shutdown.
- Nothing here measures time: ``TIMEOUT`` only bounds a hang, and is generous
  so that a loaded machine cannot fail a block that works.

```sh blocks: every ``python -m MODULE`` names a module that exists, and
``python -m MODULE [SUBCOMMAND] --help`` exits 0 and lists every ``--option``
the README passes. Inline ``python -m MODULE`` mentions name existing modules.
The test command is the line ``.ci/run`` runs, and the extras the commands
install are declared in pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Seconds a block or a command may take before it counts as hung (not a speed bound).
TIMEOUT = 300.0

FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(language: str) -> list[tuple[int, str]]:
    """The README's fenced blocks in ``language``, each with the line its code starts on."""
    blocks: list[tuple[int, str]] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    inside: str | None = None
    start, body = 0, list[str]()
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if inside is None and fence:
            inside, start, body = fence.group(1), number + 1, []
        elif inside is not None and line.strip() == "```":
            if inside == language:
                blocks.append((start, "\n".join(body) + "\n"))
            inside = None
        elif inside is not None:
            body.append(line)
    return blocks


def block_id(block: tuple[int, str]) -> str:
    return f"README.md:{block[0]}"


def environment(**extra: str) -> dict[str, str]:
    """The subprocess's environment: the repository importable, nothing inherited that steers it."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def failure(line: int, what: str, result: subprocess.CompletedProcess[str] | None) -> str:
    output = "" if result is None else f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return f"the README block at README.md:{line} {what}{output}"


def run_python(args: list[str], cwd: Path, line: int) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args``; a run that outlasts TIMEOUT fails, naming the line."""
    try:
        return subprocess.run(
            [sys.executable, *args],
            cwd=cwd,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(failure(line, f"did not finish within {TIMEOUT}s", None))


def run_program(path: Path, line: int, cwd: Path) -> None:
    """Run a block that serves until signalled: wait for READY=1, send SIGINT, expect 0."""
    address = str(cwd / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(1.0)
        process = subprocess.Popen(
            [sys.executable, str(path)],
            cwd=cwd,
            env=environment(NOTIFY_SOCKET=address),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            ready = False
            while not ready and process.poll() is None and time.monotonic() < deadline:
                try:
                    ready = notify.recv(4096) == b"READY=1"
                except TimeoutError:
                    continue
            if ready:
                process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert ready, failure(line, "never sent READY=1", result)
    assert process.returncode == 0, failure(
        line, f"exited {process.returncode} after SIGINT, not 0", result
    )


@pytest.mark.parametrize("block", code_blocks("python"), ids=block_id)
def test_python_block_runs_as_written(block: tuple[int, str], tmp_path: Path) -> None:
    """A README python block, run on its own, succeeds (a program: until SIGINT)."""
    line, code = block
    path = tmp_path / f"readme_{line}.py"
    path.write_text(code, encoding="utf-8")
    if "supervisor.run(" in code:
        run_program(path, line, tmp_path)
        return
    result = run_python([str(path)], tmp_path, line)
    assert result.returncode == 0, failure(line, f"exited {result.returncode}", result)


def python_m_commands() -> list[tuple[int, list[str]]]:
    """Every ``python -m ...`` command in the README's sh blocks, as argument lists."""
    commands: list[tuple[int, list[str]]] = []
    for start, code in code_blocks("sh"):
        for offset, text in enumerate(code.splitlines()):
            for command in text.split("#", 1)[0].split("&&"):
                words = shlex.split(command)
                if len(words) > 2 and Path(words[0]).name.startswith("python") and words[1] == "-m":
                    commands.append((start + offset, words[2:]))
    return commands


def help_command(words: list[str]) -> list[str]:
    """``-m MODULE [SUBCOMMAND...] --help``: the leading plain words are subcommands."""
    module, *rest = words
    subcommands: list[str] = []
    for word in rest:
        if not re.fullmatch(r"[a-z][a-z_-]*", word):
            break
        subcommands.append(word)
    return ["-m", module, *subcommands, "--help"]


def test_readme_has_python_m_commands() -> None:
    """The sh blocks name ``python -m`` commands (so the check below checks something)."""
    modules = {words[0] for _, words in python_m_commands()}
    assert {"venv", "pytest", "supervisor", "examples.telegram_bridge"} <= modules


@pytest.mark.parametrize(
    "command", python_m_commands(), ids=lambda c: f"README.md:{c[0]}:{' '.join(c[1])}"
)
def test_python_m_command_exists_and_takes_its_options(command: tuple[int, list[str]]) -> None:
    """A README ``python -m`` command names a module whose ``--help`` lists the options used."""
    line, words = command
    assert importlib.util.find_spec(words[0]) is not None, f"README.md:{line}: no {words[0]}"
    result = run_python(help_command(words), ROOT, line)
    assert result.returncode == 0, failure(line, f"--help exited {result.returncode}", result)
    for option in (word.split("=")[0] for word in words if word.startswith("--")):
        assert option in result.stdout, f"README.md:{line}: {option} not in --help"


def test_inline_python_m_mentions_name_existing_modules() -> None:
    """Every ``python -m MODULE`` quoted in the README's prose names a module that exists."""
    text = README.read_text(encoding="utf-8")
    modules = set(re.findall(r"`python3? -m ([\w.]+)", text))
    assert modules, "no inline python -m mentions found"
    sys.path.insert(0, str(ROOT))
    try:
        missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    finally:
        sys.path.remove(str(ROOT))
    assert not missing, f"README mentions missing modules: {missing}"


def sh_lines() -> list[str]:
    return [line for _, code in code_blocks("sh") for line in code.splitlines()]


def test_ci_runs_the_readme_test_command() -> None:
    """``.ci/run`` runs the README's test command exactly, on a line of its own."""
    (command,) = [line for line in sh_lines() if line.endswith("-m pytest")]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci


def test_installed_extras_are_declared() -> None:
    """Every extra the README's ``pip install -e '.[...]'`` names is in pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(pyproject["project"]["optional-dependencies"])
    named = {
        extra.strip()
        for line in sh_lines()
        for group in re.findall(r"'\.\[([^\]]+)\]'", line)
        for extra in group.split(",")
    }
    assert named, "no pip install -e '.[...]' found in the README"
    assert named <= declared, f"extras not in pyproject.toml: {sorted(named - declared)}"
