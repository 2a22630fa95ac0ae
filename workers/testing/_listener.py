"""What the loopback test servers share: a listener that can stop and listen again.

:class:`RestartableListener` keeps its port across stop/start (so a client's
reconnect finds the server again), and cuts every open connection on demand; the Bot
API server, the proxy and the MTProto server run their connections under it.
:class:`PeerGone` and :data:`STREAM_ERRORS` are how a server's connection code says
and recognises that the client went away.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

log = logging.getLogger(__name__)

STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What a stream raises when the peer resets or the stream is closed under us."""


class PeerGone(Exception):
    """The peer went away (EOF, reset, TLS failure): the connection is over."""


class RestartableListener:
    """Listens on a fixed port, can stop and listen again, and cuts connections on demand."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        serve: Callable[[trio.SocketStream, int], Awaitable[None]],
    ) -> None:
        self.host = host
        self.port = port
        self.connections: set[trio.CancelScope] = set()
        self.connections_accepted = 0
        self._name = name
        self._serve = serve
        self._nursery: trio.Nursery | None = None
        self._listen_scope: trio.CancelScope | None = None
        self._listen_done: trio.Event | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await nursery.start(self._listen)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    @property
    def listening(self) -> bool:
        return self._listen_scope is not None

    async def start(self) -> None:
        if self._nursery is None:
            raise RuntimeError(f"{self._name} is closed")
        if not self.listening:
            await self._nursery.start(self._listen)

    async def stop(self) -> None:
        if self._listen_scope is not None and self._listen_done is not None:
            self._listen_scope.cancel()
            await self._listen_done.wait()

    def cut(self) -> int:
        count = len(self.connections)
        for scope in list(self.connections):
            scope.cancel()
        return count

    async def _listen(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._listen_scope, self._listen_done = scope, done
                async with trio.open_nursery() as nursery:
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener)
                    task_status.started()
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            self._listen_scope = None
            done.set()

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off as trio.serve_listeners does
                log.debug("%s: accept failed: %s", self._name, exc)
                await trio.sleep(0.1)
                continue
            self.connections_accepted += 1
            self._nursery.start_soon(self._connection, stream, self.connections_accepted)

    async def _connection(self, stream: trio.SocketStream, number: int) -> None:
        scope = trio.CancelScope()
        self.connections.add(scope)
        try:
            with scope:
                await self._serve(stream, number)
        finally:
            self.connections.discard(scope)
            await trio.aclose_forcefully(stream)
