"""A tree as a whole program: signals, exit codes, and the optional operator tools.

``run(spec)`` is what ``python -m supervisor run module:tree`` calls.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import trio

from specs import DynamicSupervisorSpec, SpecError, SupervisorSpec, validate

from ._api import _Handle, _unwrap, run_supervisor
from ._events import Hook, logging_hook
from ._exceptions import FailedToStartChild, MaxIntensityReached
from ._notify import sd_notify, watchdog, watchdog_interval

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


def run(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    *,
    hooks: Sequence[Hook] | None = None,
    name: str | None = None,
    grace: float | None = 30.0,
    tree_view: bool = False,
    http: tuple[str, int] | None = None,
) -> NoReturn:
    """Run a tree as a whole program; exit the process when it ends.

    SIGINT and SIGTERM shut the tree down in reverse start order; if that
    takes longer than ``grace`` seconds the process exits with
    :data:`EXIT_SHUTDOWN_TIMEOUT` (a second signal also ends it at once).
    With ``$NOTIFY_SOCKET`` set, systemd gets ``READY=1`` once every child is
    up and ``WATCHDOG=1`` when a watchdog is configured.

    Args:
        spec: The tree.
        hooks: Event hooks (default: stdlib logging).
        name: The root's name in reports.
        grace: Seconds the ordered shutdown may take (``None``: no limit).
        tree_view: Show the live tree in the terminal (needs ``rich``).
        http: ``(host, port)`` to serve /healthz, /readyz, /metrics and /tree
            (needs ``hypercorn`` and ``prometheus-client``).

    Raises:
        SystemExit: always: :data:`EXIT_OK`, :data:`EXIT_GAVE_UP`,
            :data:`EXIT_START_FAILED`, :data:`EXIT_SHUTDOWN_TIMEOUT` or
            :data:`EXIT_BAD_SPEC`.
    """
    try:
        validate(spec)
    except SpecError as error:
        print(f"invalid supervision spec: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SPEC) from None
    all_hooks = list((logging_hook,) if hooks is None else hooks)
    try:
        trio.run(_main, spec, all_hooks, name, grace, tree_view, http)
    except MaxIntensityReached as error:
        print(f"supervision tree gave up: {error}", file=sys.stderr)
        raise SystemExit(EXIT_GAVE_UP) from None
    except FailedToStartChild as error:
        print(f"supervision tree failed to start: {error}", file=sys.stderr)
        raise SystemExit(EXIT_START_FAILED) from None
    raise SystemExit(EXIT_OK)


async def _main(
    spec: SupervisorSpec | DynamicSupervisorSpec,
    hooks: list[Hook],
    name: str | None,
    grace: float | None,
    tree_view: bool,
    http: tuple[str, int] | None,
) -> None:
    from ._health import HealthApp, Metrics, serve_health
    from ._treeview import TreeViewHook, live_view

    view_hook = TreeViewHook() if tree_view else None
    holder: list[_Handle] = []
    metrics: Metrics | None = None

    def metrics_hook(event: Any) -> None:
        if metrics is not None:
            metrics(event)

    if view_hook is not None:
        hooks = [*hooks, view_hook]
    if http is not None:
        hooks = [*hooks, metrics_hook]
    try:
        async with trio.open_nursery() as nursery:
            # listening before the first child starts: a signal during the
            # start is an ordered shutdown too (cancellation stops in order)
            stopper = _SignalStopper(nursery.cancel_scope, grace)
            nursery.start_soon(stopper.listen)
            handle = await nursery.start(
                lambda task_status: run_supervisor(
                    spec, name=name, hooks=hooks, task_status=task_status
                )
            )
            holder.append(handle)
            stopper.handle = handle
            if http is not None:
                metrics = Metrics(handle)
                app = HealthApp(handle, metrics)
                port = await nursery.start(serve_health, app, http[0], http[1])
                logger.warning("health and metrics on http://%s:%d/", http[0], port)
            if view_hook is not None:
                nursery.start_soon(live_view, handle, view_hook)
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


class _SignalStopper:
    """Turns the first SIGINT/SIGTERM into an ordered shutdown, bounded by a grace period.

    After the first signal the default handlers are back, so a second Ctrl-C
    raises KeyboardInterrupt and a second SIGTERM ends the process at once.
    """

    def __init__(self, scope: trio.CancelScope, grace: float | None) -> None:
        self.scope = scope
        self.grace = grace
        self.handle: _Handle | None = None

    async def listen(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        if self.grace is not None:
            # the ordered shutdown is shielded: only leaving the process can
            # bound it. A system task outlives our nursery's cancellation and
            # is cancelled itself when the run ends in time.
            trio.lowlevel.spawn_system_task(_exit_after, self.grace)
        if self.handle is None:
            self.scope.cancel()
        else:
            self.handle._core.request_stop()


async def _exit_after(grace: float) -> None:
    await trio.sleep(grace)
    print(f"ordered shutdown overran its {grace}s grace; exiting", file=sys.stderr, flush=True)
    os._exit(EXIT_SHUTDOWN_TIMEOUT)
