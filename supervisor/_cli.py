"""``python -m supervisor``: run or check a tree given as ``package.module:attribute``.

Every mistake a user can make on the command line (the target, its module,
its spec, an option, a missing extra, a busy port) ends the process with one
line naming it and exit code 78 (:data:`EXIT_BAD_SPEC`); ``--debug`` shows
the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import specs
from specs import DynamicSupervisorSpec, SpecError, SupervisorSpec, validate

from ._cluster import (
    ENV_ENDPOINTS,
    ENV_MAX_STARTING,
    ENV_MEMBER,
    ENV_PREFIX,
    ENV_TTL,
    ClusterConfig,
    ClusterConfigError,
    KeyedPoolSpec,
    cluster_config_from_env,
    max_starting_from_env,
)
from ._exceptions import MissingExtra
from ._program import EXIT_BAD_SPEC, EXIT_OK, Program, run

#: The environment variable holding the bearer token for /tree and /metrics.
TOKEN_ENV = "SUPERVISOR_HTTP_TOKEN"

# frames of these files are the machinery, not the user's code
_OWN = (
    str(Path(__file__).resolve().parent),
    str(Path(specs.__file__).resolve().parent),
    sysconfig.get_paths()["stdlib"],
    "<frozen ",
    "<attrs generated",
)


class TargetError(Exception):
    """The ``module:attribute`` given on the command line does not give a valid spec."""


def _where(tb: TracebackType | None) -> str:
    """``path:line`` of the innermost frame in the user's code, or ``""``."""
    found = ""
    for frame in traceback.extract_tb(tb):
        filename = frame.filename
        if not filename.startswith(_OWN) and "site-packages" not in filename:
            found = f"{_relative(filename)}:{frame.lineno}"
    return found


def _relative(filename: str) -> str:
    try:
        return os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename


def _describe(error: BaseException) -> str:
    """``path:line: Type: message`` for an exception raised by the user's code."""
    if isinstance(error, SyntaxError) and error.filename:
        where = f"{_relative(error.filename)}:{error.lineno}"
        return f"{where}: {type(error).__name__}: {error.msg}"
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    where = _where(error.__traceback__)
    return f"{where}: {text}" if where else text


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and f"{module_name}.".startswith(f"{error.name}."):
            msg = f"cannot import {module_name!r}: no module named {error.name!r}"
            raise TargetError(msg) from error
        msg = f"cannot import {module_name!r}: {_describe(error)}"
        raise TargetError(msg) from error
    except (Exception, SystemExit) as error:
        # a module that fails (or exits) while it is imported
        msg = f"cannot import {module_name!r}: {_describe(error)}"
        raise TargetError(msg) from error


def _call(target: str, factory: Any) -> Any:
    if inspect.iscoroutinefunction(factory) or inspect.isasyncgenfunction(factory):
        msg = f"{target} is an async function: give a spec, or a plain function returning one"
        raise TargetError(msg)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: try the call
        pass
    else:
        required = [
            name
            for name, parameter in signature.parameters.items()
            if parameter.default is parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        if required:
            msg = f"{target} needs arguments ({', '.join(required)}): the runner calls it with none"
            raise TargetError(msg)
    try:
        value = factory()
    except SpecError:
        raise
    except (Exception, SystemExit) as error:
        msg = f"{target}() raised {_describe(error)}"
        raise TargetError(msg) from error
    if inspect.iscoroutine(value):
        value.close()
        msg = f"{target} returned a coroutine: give a spec, or a plain function returning one"
        raise TargetError(msg)
    return value


_PROGRAMS = (SupervisorSpec, DynamicSupervisorSpec, KeyedPoolSpec)


def load(target: str) -> Program:
    """Import ``package.module:attribute``; call it if it is a function; return the spec.

    Raises:
        TargetError: the target is malformed, its module cannot be imported
            (named with the file and line that failed), the function raises
            or needs arguments, or it is not a supervisor spec or a
            :class:`~supervisor.cluster.KeyedPoolSpec`.
        SpecError: the spec is invalid.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"expected package.module:attribute, got {target!r}"
        raise TargetError(msg)
    module = _import(module_name)
    try:
        value: Any = getattr(module, attribute)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attribute!r}"
        raise TargetError(msg) from None
    if callable(value) and not isinstance(value, _PROGRAMS):
        value = _call(target, value)
    if not isinstance(value, _PROGRAMS):
        msg = (
            f"{target} is not a SupervisorSpec, DynamicSupervisorSpec or KeyedPoolSpec "
            f"(got {value!r:.80})"
        )
        raise TargetError(msg)
    validate(value.tree(None, ()) if isinstance(value, KeyedPoolSpec) else value)
    return value


def _cluster(args: argparse.Namespace, spec: Program) -> tuple[ClusterConfig | None, int | None]:
    """The cluster a keyed pool runs on (``--etcd``/``--member``, else the environment),
    and its ``--max-starting`` (else ``$TRIO_SUPERVISION_MAX_STARTING``, else ``None``).

    Raises:
        ClusterConfigError: cluster options for a plain tree, ``--member``
            without endpoints, or invalid settings.
    """
    if not isinstance(spec, KeyedPoolSpec):
        if args.etcd or args.member or args.max_starting is not None:
            msg = (
                f"--etcd, --member and --max-starting need a KeyedPoolSpec; {args.target} is a tree"
            )
            raise ClusterConfigError(msg)
        return None, None
    config = cluster_config_from_env(endpoints=args.etcd, member=args.member)
    if config is None and args.member:
        msg = f"--member {args.member!r} needs --etcd or ${ENV_ENDPOINTS}"
        raise ClusterConfigError(msg)
    return config, max_starting_from_env(max_starting=args.max_starting)


def _require_ops(*, tree: bool, http: bool) -> None:
    """Import the [ops] modules the options need now, not deep inside the running tree."""
    if tree:
        with MissingExtra.guard("ops", "--tree"):
            import rich.live  # noqa: F401
    if http:
        with MissingExtra.guard("ops", "--http"):
            import hypercorn.trio  # noqa: F401
            import prometheus_client  # noqa: F401


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        msg = f"expected HOST:PORT, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return (host or "127.0.0.1"), number


def _log_level(text: str) -> int:
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        msg = f"unknown log level {text!r} (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        raise argparse.ArgumentTypeError(msg)
    return level


def _urls(text: str) -> list[str]:
    urls = [url.strip() for url in text.split(",") if url.strip()]
    if not urls:
        raise argparse.ArgumentTypeError(f"expected URL[,URL...], got {text!r}")
    return urls


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        msg = f"expected a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line being one line and exit 78."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SPEC)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run_parser = commands.add_parser("run", help="run a tree until SIGINT/SIGTERM")
    run_parser.add_argument("target", help="package.module:attribute (a spec or a function)")
    run_parser.add_argument("--check", action="store_true", help="validate only, then exit")
    run_parser.add_argument("--tree", action="store_true", help="show the live tree (rich)")
    run_parser.add_argument(
        "--http",
        type=_address,
        metavar="HOST:PORT",
        help="serve /healthz /readyz /metrics /tree (HOST defaults to 127.0.0.1)",
    )
    run_parser.add_argument(
        "--http-token",
        metavar="TOKEN",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"bearer token required for /tree and /metrics (default: ${TOKEN_ENV}, "
        "which keeps it out of the process list)",
    )
    cluster = run_parser.add_argument_group(
        "cluster (for a KeyedPoolSpec target)",
        f"Without endpoints (here or in ${ENV_ENDPOINTS}) the pool runs embedded: every key "
        f"in this process. ${ENV_PREFIX} and ${ENV_TTL} set the pool's etcd prefix and "
        "lease TTL in seconds.",
    )
    cluster.add_argument(
        "--etcd",
        type=_urls,
        metavar="URL,...",
        help=f"etcd client URLs, e.g. http://10.0.0.5:2379 (default: ${ENV_ENDPOINTS})",
    )
    cluster.add_argument(
        "--member",
        metavar="ID",
        help=f"this member's id, unique in the cluster (default: ${ENV_MEMBER}, "
        "else host name and pid)",
    )
    cluster.add_argument(
        "--max-starting",
        type=_positive_int,
        metavar="N",
        help="keys' trees this member starts (or stops, handing over) at once "
        f"(default: ${ENV_MAX_STARTING}, else the pool's own, 8 unless it says)",
    )
    run_parser.add_argument(
        "--grace", type=_grace, default=30.0, help="seconds the ordered shutdown may take"
    )
    run_parser.add_argument(
        "--log-level", type=_log_level, default=logging.WARNING, help="e.g. INFO (default: WARNING)"
    )
    run_parser.add_argument("--debug", action="store_true", help="show tracebacks of mistakes")
    check_parser = commands.add_parser("check", help="validate a tree's spec and exit")
    check_parser.add_argument("target")
    check_parser.add_argument("--debug", action="store_true", help="show tracebacks of mistakes")
    return parser


def _configure_logging(level: int, tree_view: bool) -> None:
    if tree_view:
        from ._treeview import log_handler

        # through the live view's console, so log lines print above the tree, not into it
        logging.basicConfig(level=level, format="%(message)s", handlers=[log_handler()])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (``run`` exits the process itself)."""
    args = _parser().parse_args(argv)
    try:
        spec = load(args.target)
    except (TargetError, SpecError) as error:
        if args.debug:
            traceback.print_exception(error)
        print(f"invalid supervision spec: {error}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if args.command == "check" or args.check:
        print(f"{args.target}: ok")
        return EXIT_OK
    try:
        cluster, max_starting = _cluster(args, spec)
    except ClusterConfigError as error:
        print(f"invalid cluster settings: {error}", file=sys.stderr)
        return EXIT_BAD_SPEC
    try:
        _require_ops(tree=args.tree, http=args.http is not None)
    except MissingExtra as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_SPEC  # 78, EX_CONFIG: systemd's RestartPreventExitStatus does not retry
    _configure_logging(args.log_level, args.tree)
    run(
        spec,
        grace=args.grace,
        tree_view=args.tree,
        http=args.http,
        http_token=args.http_token,
        cluster=cluster,
        max_starting=max_starting,
    )
