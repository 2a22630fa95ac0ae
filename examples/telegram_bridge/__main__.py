"""``python -m examples.telegram_bridge``: the bridge against embedded loopback servers.

Options: ``--seconds N`` stops after N seconds (else Ctrl-C); ``--no-view`` prints
the event log instead of the live tree; ``--speed 2`` runs the fault schedule twice
as fast. Exit code 0 when every injected fault was detected and recovered from.

Against real services, give ``--real`` and set ``TG_API_ID``, ``TG_API_HASH``,
``TG_SESSIONS`` (name=session_string, comma separated), ``BOT_API_URL`` (the
``https://api.telegram.org/bot<token>/getUpdates`` URL) and ``WS_URL``: the same
tree runs, and no fault is injected (see README).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile

import trio

import supervisor
import supervisor.events
import workers
from supervisor._treeview import TreeViewHook, live_view

from ._faults import Fault, Watcher, inject, open_loopback, report, schedule
from ._tree import Bridge, Endpoints, account_work, build_tree


async def run_tree(
    endpoints: Endpoints,
    bridge: Bridge,
    hooks: list[supervisor.Hook],
    seconds: float | None,
    faults: list[Fault],
    view: TreeViewHook | None,
) -> None:
    """Start the tree and the accounts, inject the faults, stop on time or on a signal."""
    stopping = trio.Event()

    def show_shutdown(event: supervisor.Event) -> None:
        if stopping.is_set() and isinstance(event, supervisor.events.ChildTerminated):
            print(f"  stopped {event.supervisor}/{event.child}", file=sys.stderr)

    hooks = [*hooks, show_shutdown]
    tree = build_tree(endpoints, bridge)
    final = ""
    with trio.move_on_after(seconds if seconds is not None else float("inf")):
        async with (
            supervisor.open_supervisor(tree, hooks=hooks) as sup,
            trio.open_nursery() as nursery,
        ):
            try:
                pool = sup.which_children()[0].value
                for config in endpoints.accounts:
                    await pool.start_child(config)
                nursery.start_soon(account_work, bridge, [c.name for c in endpoints.accounts])
                nursery.start_soon(inject, faults)
                if view is not None:
                    nursery.start_soon(live_view, sup, view)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                nursery.cancel_scope.cancel()
            finally:
                # the tree as it was, before the ordered shutdown that follows
                final = supervisor.render_text(sup.snapshot())
                print("\nstopping: children stop newest first", file=sys.stderr)
                stopping.set()
    print(final)


async def local(args: argparse.Namespace) -> int:
    """Run against the embedded loopback servers, with the fault schedule."""
    async with open_loopback() as (loopback, endpoints):
        bridge = Bridge()
        faults = schedule(loopback, bridge, args.speed)
        view = None if args.no_view else TreeViewHook()
        hooks: list[supervisor.Hook] = [Watcher(faults)]
        if view is not None:
            hooks.append(view)
        else:
            hooks.append(supervisor.logging_hook)
        try:
            await run_tree(endpoints, bridge, hooks, args.seconds, faults, view)
        finally:
            await bridge.close_leaks()
    print(report(faults))
    print(f"bot updates forwarded to the exchange: {bridge.forwarded}")
    injected = [f for f in faults if f.injected_at is not None]
    return 0 if injected and all(f.handled for f in injected) else 1


async def real(args: argparse.Namespace) -> int:
    """Run against real services (documented, not tested)."""
    api_id, api_hash = int(os.environ["TG_API_ID"]), os.environ["TG_API_HASH"]
    sessions = [item.split("=", 1) for item in os.environ["TG_SESSIONS"].split(",") if item]
    endpoints = Endpoints(
        websocket_url=os.environ["WS_URL"],
        bot_api_url=os.environ["BOT_API_URL"],
        accounts=[
            workers.PyrogramConfig(name=n, api_id=api_id, api_hash=api_hash, session_string=s)
            for n, s in sessions
        ],
    )
    view = None if args.no_view else TreeViewHook()
    hooks: list[supervisor.Hook] = [view] if view is not None else [supervisor.logging_hook]
    await run_tree(endpoints, Bridge(), hooks, args.seconds, [], view)
    return 0


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.telegram_bridge", description=__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--no-view", action="store_true", help="log events, no live tree")
    parser.add_argument("--speed", type=float, default=1.0, help="fault schedule speed-up")
    parser.add_argument("--real", action="store_true", help="use real services (see --help)")
    args = parser.parse_args()
    if args.no_view:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    else:
        from rich.logging import RichHandler

        # through rich's console, so log lines print above the live tree, not into it
        logging.basicConfig(
            level=logging.WARNING, format="%(message)s", handlers=[RichHandler(show_path=False)]
        )
    # Pyrogram writes unknown RPC errors to ./unknown_errors.txt: keep it out of the repo
    os.chdir(tempfile.mkdtemp(prefix="telegram-bridge-"))
    code = trio.run(real if args.real else local, args)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
