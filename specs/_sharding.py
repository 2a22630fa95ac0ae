"""Spreading work over many processes: a stable shard for each key."""

from __future__ import annotations

import hashlib


def shard_for(key: str, shards: int) -> int:
    """The shard (``0 <= shard < shards``) a key belongs to, the same in every process.

    Python's ``hash()`` changes between processes (hash randomisation), so the
    shard is taken from a BLAKE2b digest instead. Give each process one shard
    (``SHARD=3`` of ``SHARDS=8``) and let it start only the accounts whose
    ``shard_for(account, SHARDS) == SHARD``.

    Raises:
        ValueError: ``shards`` is not a positive integer.
    """
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        msg = f"shards must be an integer >= 1 (got {shards!r})"
        raise ValueError(msg)
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
