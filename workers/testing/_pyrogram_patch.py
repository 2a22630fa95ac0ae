"""Point Pyrogram at the loopback MTProto server: a process-wide patch (test-only).

Pyrogram takes its data-centre addresses from
``pyrogram.session.internals.DataCenter`` (a class whose ``__new__`` returns an
``(ip, port)`` tuple). :func:`redirect_pyrogram` replaces that ``__new__`` for the
duration of a ``with`` block, and installs the loopback server's test RSA key
(``_mtproto_handshake``) so that a fresh client's key exchange succeeds. This is a
monkeypatch of the whole process, meant for tests only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
from pyrogram.session.internals.data_center import DataCenter

from ._mtproto_handshake import install_test_rsa_key

__all__ = ["redirect_pyrogram"]


@attrs.define(eq=False)
class _Route:
    address: tuple[str, int]
    dc_ids: frozenset[int] | None


_routes: list[_Route] = []
_original_new: Any = None


def _patched_new(cls: Any, dc_id: int, test_mode: bool, ipv6: bool, media: bool) -> Any:
    for route in reversed(_routes):
        if route.dc_ids is None or dc_id in route.dc_ids:
            return route.address
    return _original_new.__func__(cls, dc_id, test_mode, ipv6, media)


@contextlib.contextmanager
def redirect_pyrogram(
    port: int, *, host: str = "127.0.0.1", dc_ids: Iterable[int] | None = None
) -> Iterator[None]:
    """Make Pyrogram connect to ``host:port`` instead of Telegram's data centres (test-only).

    Replaces ``pyrogram.session.internals.DataCenter.__new__`` (which every
    ``Connection`` consults, at each reconnect) while any redirect is active; the
    original is restored when the last one ends. Redirects nest: the innermost one that
    covers a data centre wins. IPv4 only (a client with ``ipv6=True`` would connect an
    IPv6 socket to an IPv4 address).

    Args:
        port: the server's port.
        host: the server's address.
        dc_ids: the data centres to redirect; all of them when None.

    Yields:
        Nothing; the redirect lasts for the ``with`` block.
    """
    global _original_new
    route = _Route((host, port), None if dc_ids is None else frozenset(dc_ids))
    if not _routes:
        _original_new = DataCenter.__dict__["__new__"]
        setattr(DataCenter, "__new__", staticmethod(_patched_new))  # noqa: B010
    _routes.append(route)
    try:
        with install_test_rsa_key():
            yield
    finally:
        _routes.remove(route)
        if not _routes:
            setattr(DataCenter, "__new__", _original_new)  # noqa: B010
            _original_new = None
