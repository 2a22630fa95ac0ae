"""A tunnel check through a proxy: is the proxy the reason a connection failed?

Pyrogram connects through PySocks inside its own retry loop, which swallows the
proxy's error (it only logs it) and goes on forever: from the outside, a dead proxy
and a dead data centre look the same, a session that never comes up. After such a
failure the worker opens one tunnel itself, in trio, to the address Pyrogram dials,
through the same proxy (SOCKS5, SOCKS4 or HTTP ``CONNECT``, with the proxy's
credentials) and closes it again. If that fails, the proxy is to blame
(:class:`~workers.ProxyFailed`, and the next incarnation takes the next proxy); as
with httpx (see ``workers._polling``), a failure before the tunnel is up is the
proxy's, also when the proxy could not reach the target.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from typing import Any, Final

import trio

__all__ = ["tunnel_failure"]

_SOCKS5_NO_AUTH: Final = 0x00
_SOCKS5_PASSWORD: Final = 0x02


class _Refused(Exception):
    """The proxy answered, but not with an open tunnel."""


async def _exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise _Refused("the proxy closed the connection")
        data += chunk
    return data


def _socks5_address(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


async def _socks5(
    stream: trio.SocketStream, proxy: Mapping[str, Any], host: str, port: int
) -> None:
    username, password = proxy.get("username"), proxy.get("password")
    methods = [_SOCKS5_NO_AUTH] + ([_SOCKS5_PASSWORD] if username else [])
    await stream.send_all(bytes([5, len(methods), *methods]))
    version, method = await _exactly(stream, 2)
    if version != 5 or method not in methods:
        raise _Refused("the SOCKS5 proxy accepts none of our authentication methods")
    if method == _SOCKS5_PASSWORD:
        user, secret = str(username).encode(), str(password or "").encode()
        await stream.send_all(bytes([1, len(user)]) + user + bytes([len(secret)]) + secret)
        if (await _exactly(stream, 2))[1] != 0:
            raise _Refused("the SOCKS5 proxy refused our credentials")
    await stream.send_all(b"\x05\x01\x00" + _socks5_address(host) + port.to_bytes(2, "big"))
    _, status = await _exactly(stream, 2)
    if status != 0:
        raise _Refused(f"the SOCKS5 proxy refused the tunnel (reply {status})")


async def _socks4(
    stream: trio.SocketStream, proxy: Mapping[str, Any], host: str, port: int
) -> None:
    user = str(proxy.get("username") or "").encode()
    try:
        packed = ipaddress.IPv4Address(host).packed
        name = b""
    except ValueError:  # SOCKS4a: the proxy resolves the name
        packed, name = b"\x00\x00\x00\x01", host.encode("idna") + b"\x00"
    await stream.send_all(b"\x04\x01" + port.to_bytes(2, "big") + packed + user + b"\x00" + name)
    _, status = await _exactly(stream, 2)
    if status != 0x5A:
        raise _Refused(f"the SOCKS4 proxy refused the tunnel (reply {status})")


async def _http(stream: trio.SocketStream, proxy: Mapping[str, Any], host: str, port: int) -> None:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if proxy.get("username"):
        pair = f"{proxy['username']}:{proxy.get('password') or ''}".encode()
        head += f"Proxy-Authorization: Basic {base64.b64encode(pair).decode()}\r\n"
    await stream.send_all((head + "\r\n").encode())
    answer = b""
    while b"\r\n" not in answer:
        chunk = await stream.receive_some(4096)
        if not chunk or len(answer) > 16384:
            raise _Refused("the HTTP proxy closed the connection")
        answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        raise _Refused(f"the HTTP proxy refused the tunnel: {status_line!r}")


_HANDSHAKES: Final = {"socks5": _socks5, "socks4": _socks4, "http": _http}


async def tunnel_failure(
    proxy: Mapping[str, Any],
    target: tuple[str, int],
    *,
    timeout: float,  # noqa: ASYNC109 - the answer is the reason, a timeout is one
) -> str | None:
    """Open a tunnel to ``target`` through ``proxy`` and close it: why it failed, or ``None``.

    Args:
        proxy: Pyrogram's proxy mapping (``scheme``, ``hostname``, ``port``,
            optional ``username``/``password``).
        target: The address the tunnel goes to (the data centre Pyrogram dials).
        timeout: Seconds for the whole check; a proxy that takes the connection and
            never answers fails it.

    Returns:
        ``None`` if the tunnel opened; else what went wrong, without the credentials.
    """
    handshake = _HANDSHAKES[str(proxy["scheme"]).lower()]
    where = f"{proxy['hostname']}:{proxy['port']}"
    with trio.move_on_after(timeout) as deadline:
        try:
            stream = await trio.open_tcp_stream(proxy["hostname"], proxy["port"])
        except OSError as error:
            return f"cannot connect to the proxy {where}: {error}"
        try:
            async with stream:
                await handshake(stream, proxy, *target)
        except _Refused as error:
            return f"{error} ({where})"
        except (OSError, trio.BrokenResourceError) as error:
            return f"the proxy {where} broke the connection: {type(error).__name__}"
        except ValueError:
            return f"the proxy {where} answered garbage"
    if deadline.cancelled_caught:
        return f"the proxy {where} did not answer within {timeout}s"
    return None
