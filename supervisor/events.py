"""Lifecycle events, one frozen record per step; see the README for the OTP report each maps to.

Hooks get them as they happen; ``handle.subscribe()`` streams them, with
:class:`EventsDropped` where a slow subscriber missed some.
"""

from __future__ import annotations

from specs._surface import publish as _publish

from ._events import ChildExited as ChildExited
from ._events import ChildRestarted as ChildRestarted
from ._events import ChildStarted as ChildStarted
from ._events import ChildTerminated as ChildTerminated
from ._events import Event as Event
from ._events import EventsDropped as EventsDropped
from ._events import GaveUp as GaveUp
from ._events import Hook as Hook
from ._events import KeyAcquired as KeyAcquired
from ._events import KeyLost as KeyLost
from ._events import KeyReleased as KeyReleased
from ._events import MemberJoined as MemberJoined
from ._events import MemberLeft as MemberLeft
from ._events import RestartScheduled as RestartScheduled
from ._events import ShutdownTimedOut as ShutdownTimedOut
from ._events import StartFailed as StartFailed
from ._events import StreamEvent as StreamEvent
from ._events import logging_hook as logging_hook
from ._stream import DEFAULT_MAX_BUFFER as DEFAULT_MAX_BUFFER
from ._stream import EventReceiveChannel as EventReceiveChannel

__all__ = [
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "ChildTerminated",
    "DEFAULT_MAX_BUFFER",
    "Event",
    "EventReceiveChannel",
    "EventsDropped",
    "GaveUp",
    "Hook",
    "KeyAcquired",
    "KeyLost",
    "KeyReleased",
    "MemberJoined",
    "MemberLeft",
    "RestartScheduled",
    "ShutdownTimedOut",
    "StartFailed",
    "StreamEvent",
    "logging_hook",
]

_publish(__name__, globals())
