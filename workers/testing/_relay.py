"""A loopback TCP relay that can turn into a black hole (test-only).

:func:`open_tcp_relay` puts a relay on a free loopback port in front of any server.
Frozen (:meth:`TcpRelay.freeze`), it is a black hole: both TCP connections stay up
and nothing passes, not even a close, which is the half-open link only a heartbeat
finds (a trio-websocket server answers pings by itself as long as it is reading, so
the server alone cannot play dead).

Example::

    async with open_websocket_test_server() as server, open_tcp_relay(server.url) as relay:
        ...  # connect to relay.url; relay.freeze() black-holes the link
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import trio

__all__ = ["TcpRelay", "open_tcp_relay"]

_LOOPBACK: Final = "127.0.0.1"


class TcpRelay:
    """A loopback TCP relay in front of a server, which can turn into a black hole.

    Not constructed directly: see :func:`open_tcp_relay`.
    """

    def __init__(self, nursery: trio.Nursery, target_url: str, port: int) -> None:
        parts = urlsplit(target_url)
        if parts.hostname is None or parts.port is None:
            msg = f"the relay needs a URL with a host and a port (got {target_url!r})"
            raise ValueError(msg)
        self.target_host: str = parts.hostname
        self.target_port: int = parts.port
        self.port = port
        self.url = urlunsplit(parts._replace(netloc=f"{_LOOPBACK}:{port}"))
        self._nursery = nursery
        self._frozen = False
        self._links: set[trio.CancelScope] = set()
        self._frozen_links: set[trio.CancelScope] = set()

    @property
    def frozen(self) -> bool:
        """Whether it has become a black hole."""
        return self._frozen

    @property
    def links(self) -> int:
        """How many client connections it relays now."""
        return len(self._links)

    def freeze(self) -> None:
        """Become a black hole: connections stay up, nothing passes either way.

        Bytes keep being read (so no sender ever blocks) and are discarded; an
        end of stream is not passed on either. New connections are accepted and
        black-holed too, until :meth:`thaw`.
        """
        self._frozen = True
        self._frozen_links |= self._links

    def thaw(self) -> None:
        """Relay new connections again; the frozen ones stay black holes for good.

        A frozen connection cannot come back: its byte streams have gaps.
        """
        self._frozen = False

    async def drop_all(self) -> None:
        """Close every relayed connection, both sides."""
        for scope in list(self._links):
            scope.cancel()
        await trio.lowlevel.checkpoint()

    async def _serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self._relay, listeners, handler_nursery=self._nursery)

    async def _relay(self, client: trio.abc.Stream) -> None:
        upstream: trio.abc.Stream | None = None
        scope = trio.CancelScope()
        self._links.add(scope)
        if self._frozen:
            self._frozen_links.add(scope)
        try:
            with scope:
                upstream = await trio.open_tcp_stream(self.target_host, self.target_port)
                async with trio.open_nursery() as pumps:
                    pumps.start_soon(self._pump, client, upstream, scope, pumps.cancel_scope)
                    pumps.start_soon(self._pump, upstream, client, scope, pumps.cancel_scope)
        except OSError:
            pass  # the target is down: the client sees its connection close
        finally:
            self._links.discard(scope)
            self._frozen_links.discard(scope)
            # shielded: under an outer cancellation, the first close would raise
            # Cancelled and skip the second
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                if upstream is not None:
                    await trio.aclose_forcefully(upstream)

    async def _pump(
        self,
        source: trio.abc.Stream,
        sink: trio.abc.Stream,
        scope: trio.CancelScope,
        link: trio.CancelScope,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(65536)
                if scope in self._frozen_links:
                    if not data:
                        await trio.sleep_forever()  # not even the end passes
                    continue
                if not data:
                    break
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        link.cancel()  # one side ended: end the other


@asynccontextmanager
async def open_tcp_relay(target_url: str) -> AsyncIterator[TcpRelay]:
    """Relay a free loopback port to ``target_url``'s host and port for the block.

    ``relay.url`` is ``target_url`` with the relay's address; connect to it
    instead. Leaving the block closes every relayed connection.
    """
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host=_LOOPBACK)
        relay = TcpRelay(nursery, target_url, listeners[0].socket.getsockname()[1])
        nursery.start_soon(relay._serve, listeners)
        try:
            yield relay
        finally:
            nursery.cancel_scope.cancel()
