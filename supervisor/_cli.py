"""``python -m supervisor``: run or check a tree given as ``package.module:attribute``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from specs import DynamicSupervisorSpec, SpecError, SupervisorSpec, validate

from ._exceptions import MissingExtra
from ._program import EXIT_BAD_SPEC, EXIT_OK, run


class TargetError(Exception):
    """The ``module:attribute`` given on the command line does not give a spec."""


def load(target: str) -> SupervisorSpec | DynamicSupervisorSpec:
    """Import ``package.module:attribute``; call it if it is a function; return the spec.

    Raises:
        TargetError: the target is malformed, missing, or not a supervisor spec.
        SpecError: the spec is invalid.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"expected package.module:attribute, got {target!r}"
        raise TargetError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        msg = f"cannot import {module_name!r}: {error}"
        raise TargetError(msg) from None
    try:
        value: Any = getattr(module, attribute)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attribute!r}"
        raise TargetError(msg) from None
    if callable(value) and not isinstance(value, SupervisorSpec | DynamicSupervisorSpec):
        value = value()
    if not isinstance(value, SupervisorSpec | DynamicSupervisorSpec):
        msg = f"{target} is not a SupervisorSpec or DynamicSupervisorSpec (got {value!r})"
        raise TargetError(msg)
    validate(value)
    return value


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return (host or "127.0.0.1"), int(port)
    except ValueError:
        msg = f"expected HOST:PORT, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _require_ops(*, tree: bool, http: bool) -> None:
    """Import the [ops] modules the options need now, not deep inside the running tree."""
    if tree:
        with MissingExtra.guard("ops", "--tree"):
            import rich.live  # noqa: F401
    if http:
        with MissingExtra.guard("ops", "--http"):
            import hypercorn.trio  # noqa: F401
            import prometheus_client  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (``run`` exits the process itself)."""
    parser = argparse.ArgumentParser(prog="python -m supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a tree until SIGINT/SIGTERM")
    run_parser.add_argument("target", help="package.module:attribute (a spec or a function)")
    run_parser.add_argument("--check", action="store_true", help="validate only, then exit")
    run_parser.add_argument("--tree", action="store_true", help="show the live tree (rich)")
    run_parser.add_argument(
        "--http", type=_address, metavar="HOST:PORT", help="serve /healthz /readyz /metrics /tree"
    )
    run_parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds the ordered shutdown may take"
    )
    run_parser.add_argument("--log-level", default=None, help="e.g. INFO (default: WARNING)")
    check_parser = commands.add_parser("check", help="validate a tree's spec and exit")
    check_parser.add_argument("target")
    args = parser.parse_args(argv)

    try:
        spec = load(args.target)
    except (TargetError, SpecError) as error:
        print(f"invalid supervision spec: {error}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if args.command == "check" or args.check:
        print(f"{args.target}: ok")
        return EXIT_OK
    try:
        _require_ops(tree=args.tree, http=args.http is not None)
    except MissingExtra as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_SPEC  # 78, EX_CONFIG: systemd's RestartPreventExitStatus does not retry
    logging.basicConfig(
        level=(args.log_level or "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    run(spec, grace=args.grace, tree_view=args.tree, http=args.http)
