"""A loopback tunnelling proxy, HTTP ``CONNECT`` and SOCKS5 on one port (test-only).

:class:`ConnectProxy` speaks HTTP ``CONNECT`` and SOCKS5 (no authentication) on one
port, and can refuse tunnels (an HTTP status, or a SOCKS failure) or die and come back
(:meth:`ConnectProxy.kill`, :meth:`ConnectProxy.revive`), or take connections and never
answer the tunnel request (``stall_handshake``: a proxy whose upstream slots are used up),
as a proxy in front of the Bot API does. It tunnels to loopback addresses only, so a test
can never reach out.

Example::

    async with open_botapi_server(tls=True) as server, open_connect_proxy() as proxy:
        async with httpx.AsyncClient(proxy=proxy.url, verify=loopback_client_ssl_context()):
            ...  # https requests to server.url go through a CONNECT tunnel
"""

from __future__ import annotations

import contextlib
import http
import ipaddress
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Final, NoReturn

import trio

from ._listener import STREAM_ERRORS, PeerGone, RestartableListener

log = logging.getLogger(__name__)


class _Buffered:
    """A stream read by delimiter or by count, keeping what was read past it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise PeerGone
        self.buffer += data

    async def until(self, delimiter: bytes, limit: int = 16384) -> bytes:
        while (index := self.buffer.find(delimiter)) < 0:
            if len(self.buffer) > limit:
                raise PeerGone
            await self._fill()
        end = index + len(delimiter)
        chunk = bytes(self.buffer[:end])
        del self.buffer[:end]
        return chunk

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self._fill()
        chunk = bytes(self.buffer[:count])
        del self.buffer[:count]
        return chunk


_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConnectProxy:
    """A tunnelling proxy (HTTP ``CONNECT`` and SOCKS5) that can refuse, die and come back.

    Open it with :func:`open_connect_proxy`. Point httpx at :attr:`url`
    (``http://...``; httpx tunnels https targets with ``CONNECT``) or
    :attr:`socks5_url` (any target; needs ``httpx[socks]``).

    Attributes:
        refuse_status: When set, every ``CONNECT`` is answered with this
            status (502: the proxy cannot reach the target) and every SOCKS5
            request with "general failure"; httpx raises ``ProxyError``.
        stall_handshake: When true, every ``CONNECT`` request (and every
            SOCKS5 connect request, after the method negotiation) is read
            and never answered, until the client gives up.
        handshakes_stalled: Tunnel requests left unanswered so far.
        tunnels_opened: Tunnels established so far.
        targets: Where tunnels went, as ``(host, port)``, by count.
    """

    def __init__(self, *, host: str, port: int) -> None:
        """Create a proxy that is not listening yet (see :func:`open_connect_proxy`)."""
        self.refuse_status: int | None = None
        self.stall_handshake = False
        self.handshakes_stalled = 0
        self.tunnels_opened = 0
        self.targets: Counter[tuple[str, int]] = Counter()
        self._listener = RestartableListener(host, port, "ConnectProxy", self._serve)

    @property
    def port(self) -> int:
        """The port it listens on (also after :meth:`kill`)."""
        return self._listener.port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self._listener.host}:{self.port}"

    @property
    def socks5_url(self) -> str:
        """``socks5://host:port`` (the same port)."""
        return f"socks5://{self._listener.host}:{self.port}"

    def url_for(self, scheme: str) -> str:
        """:attr:`url` for ``"http"``, :attr:`socks5_url` for ``"socks5"``."""
        if scheme not in ("http", "socks5"):
            raise ValueError(f"ConnectProxy.url_for: scheme must be 'http' or 'socks5': {scheme!r}")
        return self.url if scheme == "http" else self.socks5_url

    @property
    def alive(self) -> bool:
        """Whether it accepts connections."""
        return self._listener.listening

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted so far."""
        return self._listener.connections_accepted

    @property
    def live_tunnels(self) -> int:
        """Client connections open now (tunnelling or negotiating)."""
        return len(self._listener.connections)

    async def kill(self) -> None:
        """Die: stop listening (new connections are refused) and cut every tunnel."""
        await self._listener.stop()
        self._listener.cut()

    async def revive(self) -> None:
        """Listen again, on the same port."""
        await self._listener.start()

    async def _serve(self, client: trio.SocketStream, number: int) -> None:
        reader = _Buffered(client)
        try:
            first = await reader.exactly(1)
            if first == b"\x05":
                target = await self._socks5(reader)
            else:
                reader.buffer[:0] = first
                target = await self._connect(reader)
            if target is None:
                return
            upstream, (host, port) = target
            async with upstream:
                self.tunnels_opened += 1
                self.targets[(host, port)] += 1
                if reader.buffer:
                    await upstream.send_all(bytes(reader.buffer))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
        except (PeerGone, *STREAM_ERRORS) as exc:
            log.debug("proxy connection %d: %r", number, exc)

    async def _stall(self, client: trio.abc.Stream) -> NoReturn:
        """Answer nothing, but notice when the client gives up, as a real proxy does."""
        self.handshakes_stalled += 1
        while await client.receive_some(65536):
            pass
        raise PeerGone

    async def _open(self, host: str, port: int) -> trio.SocketStream | None:
        if self.refuse_status is not None or not _is_loopback(host):
            return None
        try:
            with trio.fail_after(5):
                return await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError):
            return None

    async def _connect(self, reader: _Buffered) -> tuple[trio.SocketStream, tuple[str, int]] | None:
        head = await reader.until(b"\r\n\r\n")
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        authority = rest.split(" ", 1)[0]
        host, _, port_text = authority.rpartition(":")
        client = reader.stream
        if self.stall_handshake:
            await self._stall(client)
        if method.upper() != "CONNECT" or not port_text.isdigit():
            await client.send_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return None
        host = host.strip("[]")
        upstream = await self._open(host, int(port_text))
        if upstream is None:
            status = self.refuse_status or (502 if _is_loopback(host) else 403)
            reason = _reason(status)
            await client.send_all(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            return None
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream, (host, int(port_text))

    async def _socks5(self, reader: _Buffered) -> tuple[trio.SocketStream, tuple[str, int]] | None:
        client = reader.stream
        (count,) = await reader.exactly(1)
        methods = await reader.exactly(count)
        if 0 not in methods:
            await client.send_all(b"\x05\xff")
            return None
        await client.send_all(b"\x05\x00")
        version, command, _, kind = await reader.exactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.exactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.exactly(16)))
        elif kind == 3:
            (length,) = await reader.exactly(1)
            host = (await reader.exactly(length)).decode("idna")
        else:
            raise PeerGone
        port = int.from_bytes(await reader.exactly(2), "big")
        if self.stall_handshake:
            await self._stall(client)
        if version != 5 or command != 1:
            await client.send_all(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return None
        upstream = await self._open(host, port)
        if upstream is None:
            code = b"\x01" if self.refuse_status is not None or _is_loopback(host) else b"\x02"
            await client.send_all(b"\x05" + code + b"\x00\x01" + bytes(6))
            return None
        await client.send_all(b"\x05\x00\x00\x01" + bytes(6))
        return upstream, (host, port)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


async def _pipe(
    source: trio.abc.ReceiveStream, sink: trio.abc.SendStream, scope: trio.CancelScope
) -> None:
    # either side ending ends the tunnel, as a real proxy closes both halves
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except STREAM_ERRORS:
        pass
    finally:
        scope.cancel()


@contextlib.asynccontextmanager
async def open_connect_proxy(
    *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[ConnectProxy]:
    """Run a loopback tunnelling proxy for the duration of an ``async with`` block.

    It tunnels only to loopback addresses (anything else is 403, or SOCKS5
    "not allowed"), so a test can never reach out.

    Args:
        host: The address to listen on.
        port: The port; 0 picks a free one (kept across kill/revive).

    Yields:
        The listening proxy. Leaving the block cuts every tunnel.
    """
    proxy = ConnectProxy(host=host, port=port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy._listener.run)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
