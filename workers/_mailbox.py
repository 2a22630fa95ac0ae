"""Mailboxes and the name registry: reaching the current incarnation of a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from ._exceptions import CalleeExited, CallTimeout, NameTaken, NotRunning


@attrs.define(eq=False)
class _Reply:
    """One call's reply slot: filled once, by the callee or by its exit."""

    done: trio.Event = attrs.Factory(trio.Event)
    value: Any = None
    error: BaseException | None = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.value, self.error = value, error
        self.done.set()


@attrs.frozen
class CallEnvelope:
    """A request waiting for a reply."""

    request: Any
    reply: _Reply


@attrs.frozen
class CastEnvelope:
    """A message that wants no reply."""

    message: Any


@attrs.frozen
class StopEnvelope:
    """A request to stop, answered when the incarnation has exited."""

    reply: _Reply


Envelope = CallEnvelope | CastEnvelope | StopEnvelope


class Mailbox:
    """One incarnation's inbox: bounded, and closed (failing waiting callers) when it exits.

    Not constructed by users: a worker opens one per incarnation, so a request
    sent to one incarnation is never handled by the next.
    """

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._send, self.receive = trio.open_memory_channel[Envelope](size)
        self._pending: set[_Reply] = set()

    async def call(self, request: Any, *, timeout: float = 5.0) -> Any:  # noqa: ASYNC109 - gen_server:call's timeout
        """Send ``request`` and wait for the reply (or the callee's failure).

        Raises:
            CallTimeout: no reply within ``timeout`` seconds.
            CalleeExited: the incarnation exited before replying.
            NotRunning: the incarnation had already exited.
        """
        reply = await self._exchange(lambda reply: CallEnvelope(request, reply), timeout)
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def cast(self, message: Any) -> None:
        """Queue ``message`` (waiting for room if the mailbox is full).

        Raises:
            NotRunning: the incarnation has exited.
        """
        try:
            await self._send.send(CastEnvelope(message))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise NotRunning(self.name) from None

    async def stop(self, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - gen_server:stop's timeout
        """Ask the incarnation to stop (after the messages queued before), and wait until it has.

        A requested stop is a normal exit: a TRANSIENT worker stays down, a
        PERMANENT one is restarted (as OTP's ``gen_server:stop``). Returns once
        the incarnation has exited, also if it exited otherwise meanwhile.

        Raises:
            CallTimeout: it had not exited within ``timeout`` seconds.
            NotRunning: the incarnation had already exited.
        """
        await self._exchange(StopEnvelope, timeout)

    async def _exchange(self, envelope: Callable[[_Reply], Envelope], timeout: float) -> _Reply:  # noqa: ASYNC109
        """Send an envelope with a reply slot and wait until it is filled (or the exit fills it)."""
        reply = _Reply()
        self._pending.add(reply)
        try:
            with trio.move_on_after(timeout) as scope:
                try:
                    await self._send.send(envelope(reply))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    raise NotRunning(self.name) from None
                await reply.done.wait()
            if scope.cancelled_caught:
                raise CallTimeout(self.name, timeout)
        finally:
            self._pending.discard(reply)
        return reply

    def close(self, reason: BaseException | None) -> None:
        """Refuse new messages and fail every caller still waiting."""
        self._send.close()
        for reply in list(self._pending):
            reply.resolve(error=CalleeExited(self.name, reason))


class Registry:
    """Names to the mailboxes of the workers' current incarnations.

    A worker registers when its ``init`` succeeded and unregisters when it
    exits, so ``call(name, ...)`` always reaches the incarnation that is
    running now, or fails at once with :class:`NotRunning`.
    """

    def __init__(self) -> None:
        self._mailboxes: dict[str, Mailbox] = {}

    def register(self, mailbox: Mailbox) -> None:
        """Make ``mailbox`` the current one for its name.

        Raises:
            NameTaken: another running worker holds the name.
        """
        if mailbox.name in self._mailboxes:
            raise NameTaken(mailbox.name)
        self._mailboxes[mailbox.name] = mailbox

    def unregister(self, mailbox: Mailbox) -> None:
        """Forget ``mailbox`` if it is still the current one for its name."""
        if self._mailboxes.get(mailbox.name) is mailbox:
            del self._mailboxes[mailbox.name]

    def whereis(self, name: str) -> Mailbox | None:
        """The running incarnation's mailbox, if any."""
        return self._mailboxes.get(name)

    def names(self) -> list[str]:
        """The names of the running workers."""
        return sorted(self._mailboxes)

    def _get(self, name: str) -> Mailbox:
        mailbox = self._mailboxes.get(name)
        if mailbox is None:
            raise NotRunning(name)
        return mailbox

    async def call(self, name: str, request: Any, *, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Call the running worker named ``name``; see :meth:`Mailbox.call`."""
        return await self._get(name).call(request, timeout=timeout)

    async def cast(self, name: str, message: Any) -> None:
        """Cast to the running worker named ``name``; see :meth:`Mailbox.cast`."""
        await self._get(name).cast(message)

    async def stop(self, name: str, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop the running worker named ``name``; see :meth:`Mailbox.stop`."""
        await self._get(name).stop(timeout=timeout)


#: The process-wide default registry (pass your own ``registry=`` to isolate).
registry = Registry()
