"""The event stream: any number of subscribers to a supervisor's events, and its subtree's.

``handle.subscribe()`` gives a receive channel of the frozen event records
(``supervisor.events``). The supervisor never waits for a subscriber: each
has its own bounded buffer, filled with ``send_nowait``; what does not fit is
counted, and the stream carries an :class:`~supervisor.events.EventsDropped`
record in its place as soon as there is room again (the subscriber's next
``receive`` makes room). Delivery is O(subscribers) per event, plus one step
per supervisor above (a subtree's events reach every supervisor's
subscribers up to the root); with no subscriber it costs one check per step.

Closing the receive channel unsubscribes. When the supervisor stops, the
stream ends (``EndOfChannel``) after the events of its shutdown.
"""

from __future__ import annotations

import contextlib
from typing import Final, get_args

import attrs
import trio

from ._events import Event, EventsDropped, StreamEvent
from ._exceptions import SupervisorNotRunning

#: Events a subscriber's buffer holds before it drops (and counts) more.
DEFAULT_MAX_BUFFER: Final = 1000

_EVENT_TYPES: Final = frozenset(get_args(Event))


@attrs.define(eq=False)
class _Subscription:
    """One subscriber: its buffer's send side, its filter, and what it missed."""

    send: trio.MemorySendChannel[StreamEvent]
    kinds: tuple[type[Event], ...]
    under: str | None
    dropped: int = 0
    first_drop: float = 0.0
    last_drop: float = 0.0
    total_dropped: int = 0

    def wants(self, event: Event) -> bool:
        if self.kinds and not isinstance(event, self.kinds):
            return False
        if self.under is None:
            return True
        where = f"{event.path}/{event.child}"
        return where == self.under or where.startswith(self.under + "/")

    def offer(self, event: Event) -> bool:
        """Deliver ``event`` or count it as dropped; ``False`` once the subscriber is gone."""
        try:
            if self.dropped:
                self._send_drops()
            self.send.send_nowait(event)
        except trio.WouldBlock:
            if not self.dropped:
                self.first_drop = event.time
            self.dropped += 1
            self.total_dropped += 1
            self.last_drop = event.time
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def flush(self) -> None:
        """Queue the record of what was dropped, if there is room now."""
        if self.dropped:
            with contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ):
                self._send_drops()

    def take_drops(self) -> EventsDropped | None:
        """The pending record, once the buffer has ended (nothing else can carry it)."""
        if not self.dropped:
            return None
        record = self._drops()
        self.dropped = 0
        return record

    def _send_drops(self) -> None:
        self.send.send_nowait(self._drops())  # raises before anything is queued
        self.dropped = 0

    def _drops(self) -> EventsDropped:
        return EventsDropped(
            count=self.dropped, first_time=self.first_drop, last_time=self.last_drop
        )


class EventStream:
    """One supervisor's subscribers; its events, and its subtree's, pass through ``publish``.

    Args:
        name: The supervisor's name (in errors).
        parent: The stream of the supervisor it sits under, if any.
    """

    def __init__(self, name: str, parent: EventStream | None) -> None:
        self.name = name
        self.parent = parent
        # insertion-ordered, with O(1) removal when a subscriber leaves
        self.subscriptions: dict[_Subscription, None] = {}
        self.closed = False

    def subscribe(
        self, kinds: tuple[type[Event], ...], under: str | None, max_buffer: int
    ) -> EventReceiveChannel:
        """A new subscriber's channel (see ``SupervisorHandle.subscribe``)."""
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            msg = f"max_buffer must be a positive int (got {max_buffer!r})"
            raise ValueError(msg)
        for kind in kinds:
            if not isinstance(kind, type) or kind not in _EVENT_TYPES:
                msg = f"subscribe() takes event classes of supervisor.events (got {kind!r})"
                raise TypeError(msg)
        if under is not None and (not isinstance(under, str) or not under.strip("/")):
            msg = f"under must be a path such as 'root/child' (got {under!r})"
            raise ValueError(msg)
        if self.closed:
            raise SupervisorNotRunning(self.name)
        send, receive = trio.open_memory_channel[StreamEvent](max_buffer)
        subscription = _Subscription(send, kinds, None if under is None else under.strip("/"))
        self.subscriptions[subscription] = None
        return EventReceiveChannel(receive, subscription, self)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber of this supervisor and of those above it."""
        stream: EventStream | None = self
        while stream is not None:
            if stream.subscriptions:
                stream._deliver(event)
            stream = stream.parent

    def _deliver(self, event: Event) -> None:
        gone = [sub for sub in self.subscriptions if sub.wants(event) and not sub.offer(event)]
        for sub in gone:
            self.subscriptions.pop(sub, None)

    def unsubscribe(self, subscription: _Subscription) -> None:
        """Forget a subscriber (its channel was closed)."""
        self.subscriptions.pop(subscription, None)

    def close(self) -> None:
        """The supervisor stopped: end every subscriber's stream after what it holds."""
        self.closed = True
        for sub in self.subscriptions:
            sub.send.close()
        self.subscriptions.clear()


class EventReceiveChannel(trio.abc.ReceiveChannel[StreamEvent]):
    """A subscriber's end of the event stream: a trio receive channel of frozen records.

    Iterate it with ``async for``; it yields :data:`~supervisor.events.Event`
    records and, where events did not fit its buffer,
    :class:`~supervisor.events.EventsDropped`. Closing it (``close()``,
    ``aclose()``, or leaving ``async with``) unsubscribes. Made by
    ``handle.subscribe()``.
    """

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[StreamEvent],
        sub: _Subscription,
        stream: EventStream,
    ) -> None:
        self._receive = receive
        self._sub = sub
        self._stream = stream

    @property
    def dropped(self) -> int:
        """How many events this subscriber missed in all (each also in an ``EventsDropped``)."""
        return self._sub.total_dropped

    def statistics(self) -> trio.MemoryChannelStatistics:
        """Its buffer's statistics (``current_buffer_used``, ``max_buffer_size``, ...)."""
        return self._receive.statistics()

    def receive_nowait(self) -> StreamEvent:
        """The next record, or raise ``trio.WouldBlock`` (``trio.EndOfChannel`` at the end)."""
        try:
            item = self._receive.receive_nowait()
        except trio.EndOfChannel:
            record = self._sub.take_drops()
            if record is None:
                raise
            return record
        self._sub.flush()  # it made room: the record of what was dropped goes next
        return item

    async def receive(self) -> StreamEvent:
        """The next record; raises ``trio.EndOfChannel`` once the supervisor has stopped."""
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            record = self._sub.take_drops()
            if record is None:
                raise
            return record
        self._sub.flush()
        return item

    def close(self) -> None:
        """Unsubscribe; what is still buffered is discarded."""
        self._stream.unsubscribe(self._sub)
        self._receive.close()

    async def aclose(self) -> None:
        """Unsubscribe (see :meth:`close`)."""
        self.close()
        await trio.lowlevel.checkpoint()
