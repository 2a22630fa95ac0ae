"""``python -m examples.event_stream``: subscribe to a tree's events; print its typed failures.

Runs the demo's tree (``examples/telegram_bridge``: three Pyrogram accounts, a
WebSocket session, a Bot API poller) against its loopback servers, with its fault
schedule, and one subscriber to the root's event stream. Each failure is printed as
it happens, typed (``FloodWait``, ``ConnectionLost``, ``HeartbeatTimeout``,
``PoolExhausted``, ``AuthRevoked``), with where it happened (the accounts' own
supervisors join the tree: ``bridge/accounts/account-2/client``), what the
supervisor does about it, and when the child is back::

       4.6s  bridge/accounts/account-2/client  FloodWait(seconds=3) -> restart
       4.6s  bridge/accounts/account-2/client  restart in 3.0s
       7.7s  bridge/accounts/account-2/client  back (incarnation 2)

Options: ``--seconds N`` (default 30: every fault happens by 25 s), ``--speed 2``
runs the schedule twice as fast. Exit code 0 when every fault was handled.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import TextIO

import trio

import supervisor
from supervisor import events
from supervisor.events import EventReceiveChannel

from .telegram_bridge._faults import Watcher, inject, open_loopback, report, schedule
from .telegram_bridge._tree import Bridge, account_work, build_tree

#: What the subscriber asks for: failures, decisions, recoveries.
KINDS = (events.ChildExited, events.RestartScheduled, events.ChildRestarted, events.GaveUp)


def describe(event: events.StreamEvent, start: float) -> str | None:
    """One line for an event worth printing (``None`` for the rest)."""
    if isinstance(event, events.EventsDropped):
        return f"  (this subscriber fell behind: {event.count} events dropped)"
    where = f"{event.time - start:6.1f}s  {event.path}/{event.child}"
    match event:
        case events.ChildExited(reason=reason, action=action) if reason.exception is not None:
            kind, text = type(reason.exception).__name__, str(reason.exception)
            typed = text if text.startswith(kind) else f"{kind}: {text}"  # workers' failures
            return f"{where}  {typed} -> {action.value}"
        case events.RestartScheduled(delay=delay):
            return f"{where}  restart in {delay:.1f}s"
        case events.ChildRestarted(incarnation=incarnation):
            return f"{where}  back (incarnation {incarnation})"
        case events.GaveUp(reason=reason):
            return f"{where}  its supervisor gave up: {reason}"
    return None


async def print_failures(stream: EventReceiveChannel, start: float, out: TextIO) -> None:
    """Print each failure, decision and recovery the stream carries, until it ends."""
    async with stream:
        async for event in stream:
            line = describe(event, start)
            if line is not None:
                print(line, file=out, flush=True)


async def main(seconds: float = 30.0, speed: float = 1.0, out: TextIO = sys.stdout) -> int:
    """Run the demo's tree and faults for ``seconds``; return 0 if every fault was handled."""
    async with open_loopback() as (loopback, endpoints):
        bridge = Bridge()
        faults = schedule(loopback, bridge, speed)
        start = trio.current_time()
        with trio.move_on_after(seconds):
            async with (
                supervisor.open_supervisor(
                    build_tree(endpoints, bridge), hooks=[Watcher(faults)]
                ) as sup,
                trio.open_nursery() as nursery,
            ):
                # subscribed before the accounts start: their failures come through it too
                nursery.start_soon(print_failures, sup.subscribe(*KINDS), start, out)
                pool = sup.which_children()[0].value
                for config in endpoints.accounts:
                    await pool.start_child(config)
                nursery.start_soon(account_work, bridge, [c.name for c in endpoints.accounts])
                nursery.start_soon(inject, faults)
                await trio.sleep_forever()
        await bridge.close_leaks()
    print(report(faults), file=out)
    injected = [f for f in faults if f.injected_at is not None]
    return 0 if injected and all(f.handled for f in injected) else 1


def cli() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m examples.event_stream", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="stop after this long")
    parser.add_argument("--speed", type=float, default=1.0, help="fault schedule speed-up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the injections
    # Pyrogram writes unknown RPC errors to ./unknown_errors.txt: keep it out of the repo
    os.chdir(tempfile.mkdtemp(prefix="event-stream-"))
    raise SystemExit(trio.run(main, args.seconds, args.speed))


if __name__ == "__main__":
    cli()
