"""systemd notifications: ``READY=1`` once the tree is up, ``WATCHDOG=1`` while it runs."""

from __future__ import annotations

import os
import socket

import trio


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    # an abstract socket is written with a leading "@"
    return "\0" + path[1:] if path.startswith("@") else path


async def sd_notify(message: str) -> bool:
    """Send one datagram to ``$NOTIFY_SOCKET``; return whether there was one to send to."""
    address = _address()
    if address is None:
        return False
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.sendto(message.encode(), address)
    return True


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, as systemd recommends, if a watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or _address() is None:
        return None
    return int(usec) / 2_000_000


async def watchdog(interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds; a stuck loop stops sending."""
    while True:
        await sd_notify("WATCHDOG=1")
        await trio.sleep(interval)
