"""Small helpers shared by the runtime tests."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from supervisor import events as ev


@attrs.define
class Recorder:
    """An event hook that keeps everything, with a compact view for asserts."""

    events: list[ev.Event] = attrs.Factory(list)

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def steps(self, *kinds: type[Any]) -> list[tuple[str, str]]:
        """``(EventName, child)`` pairs, optionally only of some event kinds."""
        return [
            (type(e).__name__, e.child) for e in self.events if not kinds or isinstance(e, kinds)
        ]

    def lifecycle(self) -> list[tuple[str, str]]:
        """Starts, stops and give-ups as ``("start"|"stop"|"exit"|"gave_up", child)``."""
        names = {
            ev.ChildStarted: "start",
            ev.ChildRestarted: "start",
            ev.ChildTerminated: "stop",
            ev.ChildExited: "exit",
            ev.GaveUp: "gave_up",
            ev.StartFailed: "start_failed",
        }
        return [(names[type(e)], e.child) for e in self.events if type(e) in names]

    def times(self, kind: type[Any]) -> list[float]:
        """When events of a kind happened."""
        return [e.time for e in self.events if isinstance(e, kind)]


async def forever(*args: Any) -> None:
    """A child that runs until stopped."""
    await trio.sleep_forever()


async def crash_after(seconds: float, message: str = "boom") -> None:
    """A child that crashes after a while."""
    await trio.sleep(seconds)
    raise RuntimeError(message)


async def return_after(seconds: float) -> None:
    """A child that returns normally after a while."""
    await trio.sleep(seconds)
