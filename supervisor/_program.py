"""A tree as a whole program: signals, exit codes, and the optional operator tools.

``run(spec)`` is what ``python -m supervisor run module:tree`` calls. A
:class:`~supervisor.cluster.KeyedPoolSpec` runs as one member of its cluster
(or embedded); every keyed pool open in the program shows in /tree,
/metrics and the tree view.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import trio

from specs import DynamicSupervisorSpec, SpecError, SupervisorSpec, validate

from ._api import _Handle, _unwrap, run_supervisor
from ._cluster import (
    ClusterConfig,
    ClusterConfigError,
    KeyedPoolSpec,
    PoolRegistry,
    cluster_config_from_env,
    max_starting_from_env,
    registering_pools,
)
from ._events import Hook, logging_hook
from ._exceptions import FailedToStartChild, MaxIntensityReached
from ._notify import sd_notify, watchdog, watchdog_interval

if TYPE_CHECKING:
    from ._health import HealthApp

logger = logging.getLogger("supervisor")

#: Exit code: the tree was stopped (a signal, or it shut itself down).
EXIT_OK: Final = 0
#: Exit code: the tree could not start (a child failed to start).
EXIT_START_FAILED: Final = 69
#: Exit code: the root supervisor gave up (maximum restart intensity).
EXIT_GAVE_UP: Final = 70
#: Exit code: the ordered shutdown overran its grace period.
EXIT_SHUTDOWN_TIMEOUT: Final = 75
#: Exit code: the spec is invalid (``RestartPreventExitStatus=78``).
EXIT_BAD_SPEC: Final = 78


class _HttpUnavailable(OSError):
    """The ``--http`` address cannot be served (a busy port, an unknown host)."""


Program = SupervisorSpec | DynamicSupervisorSpec | KeyedPoolSpec


def run(
    spec: Program,
    *,
    hooks: Sequence[Hook] | None = None,
    name: str | None = None,
    grace: float | None = 30.0,
    tree_view: bool = False,
    http: tuple[str, int] | None = None,
    http_token: str | None = None,
    cluster: ClusterConfig | None = None,
    max_starting: int | None = None,
) -> NoReturn:
    """Run a tree as a whole program; exit the process when it ends.

    SIGINT and SIGTERM shut the tree down in reverse start order; if that
    takes longer than ``grace`` seconds the process exits with
    :data:`EXIT_SHUTDOWN_TIMEOUT`. A second signal ends it at once, with
    ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a
    process killed by it. With ``$NOTIFY_SOCKET`` set, systemd gets
    ``READY=1`` once every child is up and ``WATCHDOG=1`` when a watchdog is
    configured.

    Args:
        spec: The tree, or a keyed pool (:class:`~supervisor.cluster.KeyedPoolSpec`):
            its tree is a root with one child holding the pool open.
        hooks: Event hooks (default: stdlib logging); a pool's keys' trees get
            them too.
        name: The root's name in reports.
        grace: Seconds the ordered shutdown may take (``None``: no limit).
        tree_view: Show the live tree in the terminal (needs ``rich``).
        http: ``(host, port)`` to serve /healthz, /readyz, /metrics and /tree
            (needs ``hypercorn`` and ``prometheus-client``); it listens
            before the first child starts.
        http_token: If given, /tree and /metrics need ``Authorization:
            Bearer <http_token>``.
        cluster: For a keyed pool: the cluster's etcd and this member's id;
            ``None`` reads the ``TRIO_SUPERVISION_*`` environment
            (:func:`~supervisor.cluster.cluster_config_from_env`), embedded
            if it names no endpoints. Only for a keyed pool.
        max_starting: For a keyed pool: how many keys' trees this member
            starts (or stops, handing over) at once; ``None`` reads
            ``TRIO_SUPERVISION_MAX_STARTING``, else the spec's own value.

    Raises:
        SystemExit: always: :data:`EXIT_OK`, :data:`EXIT_GAVE_UP`,
            :data:`EXIT_START_FAILED`, :data:`EXIT_SHUTDOWN_TIMEOUT` or
            :data:`EXIT_BAD_SPEC` (also when ``http`` cannot be served, or
            the cluster's settings are invalid).
    """
    all_hooks = list((logging_hook,) if hooks is None else hooks)
    try:
        if isinstance(spec, KeyedPoolSpec):
            cluster = cluster or cluster_config_from_env()
            starting = max_starting_from_env(max_starting=max_starting)
            if starting is not None:
                spec = attrs.evolve(spec, max_starting=starting)
        elif cluster is not None or max_starting is not None:
            msg = "a cluster or max_starting was given for a tree: only a KeyedPoolSpec takes one"
            raise ClusterConfigError(msg)
        validate(program_tree(spec, cluster, all_hooks))
    except (SpecError, ClusterConfigError) as error:
        print(f"invalid supervision spec: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SPEC) from None
    try:
        trio.run(_main, spec, cluster, all_hooks, name, grace, tree_view, http, http_token)
    except _HttpUnavailable as error:
        print(error, file=sys.stderr)
        raise SystemExit(EXIT_BAD_SPEC) from None
    except MaxIntensityReached as error:
        print(f"supervision tree gave up: {error}", file=sys.stderr)
        raise SystemExit(EXIT_GAVE_UP) from None
    except FailedToStartChild as error:
        print(f"supervision tree failed to start: {error}", file=sys.stderr)
        raise SystemExit(EXIT_START_FAILED) from None
    raise SystemExit(EXIT_OK)


def program_tree(
    spec: Program, cluster: ClusterConfig | None, hooks: Sequence[Hook]
) -> SupervisorSpec | DynamicSupervisorSpec:
    """The tree ``run`` runs: ``spec`` itself, or a keyed pool's tree on ``cluster``.

    A pool's keys' trees get ``hooks`` (and so the program's metrics and tree view).
    """
    return spec.tree(cluster, hooks) if isinstance(spec, KeyedPoolSpec) else spec


async def _main(
    spec: Program,
    cluster: ClusterConfig | None,
    hooks: list[Hook],
    name: str | None,
    grace: float | None,
    tree_view: bool,
    http: tuple[str, int] | None,
    http_token: str | None,
) -> None:
    from ._treeview import TreeViewHook, live_view

    view_hook = TreeViewHook() if tree_view else None
    if view_hook is not None:
        hooks = [*hooks, view_hook]
    try:
        # every keyed pool opened in the tree (by a KeyedPoolSpec or a child) registers here
        with registering_pools() as pools:
            async with trio.open_nursery() as nursery:
                # listening before the first child starts: a signal during the
                # start is an ordered shutdown too (cancellation stops in order)
                stopper = _SignalStopper(nursery.cancel_scope, grace)
                app = None
                if http is not None:
                    app = await _serve(nursery, http, http_token, pools)
                    hooks = [*hooks, app.metrics]
                tree = program_tree(spec, cluster, hooks)
                handle = await nursery.start(
                    lambda task_status: run_supervisor(
                        tree, name=name, hooks=hooks, task_status=task_status
                    )
                )
                stopper.handle = handle
                if app is not None:
                    app.handle = app.metrics.handle = handle
                if view_hook is not None:
                    nursery.start_soon(partial(live_view, handle, view_hook, pools=pools))
                await sd_notify("READY=1")
                interval = watchdog_interval()
                if interval is not None:
                    nursery.start_soon(watchdog, interval)
                await handle._core.finished.wait()
                await sd_notify("STOPPING=1")
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = _unwrap(group)
        raise error from error.__cause__


async def _serve(
    nursery: trio.Nursery, http: tuple[str, int], token: str | None, pools: PoolRegistry
) -> HealthApp:
    """Start serving the health app (before the tree: a busy port is a mistake, not a crash)."""
    from ._health import HealthApp, Metrics, serve_health

    app = HealthApp(None, Metrics(pools=pools), pools=pools, token=token)
    host, port = http
    try:
        bound = await nursery.start(serve_health, app, host, port)
    except (OSError, BaseExceptionGroup) as raised:
        error = _unwrap(raised) if isinstance(raised, BaseExceptionGroup) else raised
        if not isinstance(error, OSError):
            raise
        msg = f"cannot serve HTTP on {host}:{port}: {error.strerror or error}"
        raise _HttpUnavailable(msg) from None
    logger.warning("health and metrics on http://%s:%d/", host, bound)
    if not _loopback(host):
        logger.warning(
            "HTTP on %s is reachable from other hosts: /healthz and /readyz answer anyone%s",
            host,
            "" if token is not None else "; so do /tree and /metrics (no --http-token)",
        )
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


class _SignalStopper:
    """Turns the first SIGINT/SIGTERM into an ordered shutdown, the second into an exit.

    It listens in a system task, which outlives the nursery's cancellation
    (a signal during the start cancels it) and is cancelled itself when the
    run ends. The ordered shutdown is bounded by ``grace``; the second signal
    ends the process at once, whatever the cleanup still waits for.
    """

    def __init__(self, scope: trio.CancelScope, grace: float | None) -> None:
        self.scope = scope
        self.grace = grace
        self.handle: _Handle | None = None
        trio.lowlevel.spawn_system_task(self.listen)

    async def listen(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
            if self.grace is not None:
                # the ordered shutdown is shielded: only leaving the process can
                # bound it
                trio.lowlevel.spawn_system_task(_exit_after, self.grace)
            if self.handle is None:
                self.scope.cancel()
            else:
                self.handle._core.request_stop()
            async for second in signals:
                name = signal.Signals(second).name
                print(f"second {name}: exiting without waiting for the cleanup", file=sys.stderr)
                _exit(128 + second)


def _exit(code: int) -> NoReturn:
    """Leave the process now: flush what was printed, skip everything else."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to save
            stream.flush()
    os._exit(code)


async def _exit_after(grace: float) -> None:
    await trio.sleep(grace)
    print(f"ordered shutdown overran its {grace}s grace; exiting", file=sys.stderr)
    _exit(EXIT_SHUTDOWN_TIMEOUT)
