"""Placement of keys on members by rendezvous (highest-random-weight) hashing.

Pure policy, no trio: every member computes the same owner for a key from the
same set of live members, with no coordination. Each key's owner is the member
with the highest score for it, so when a member joins or leaves only the keys
whose best member changed move: about ``1/N`` of them for a change of one in
``N`` members (``specs.shard_for``'s modulo moves most keys; it stays the
static alternative for a fixed fleet). A weight scales a member's share
(weighted rendezvous: score ``-weight / ln(u)`` with ``u`` uniform in (0, 1)).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

_SCALE = float(1 << 64)


def _uniform(key: str, member: str) -> float:
    """A hash of (key, member) as a float strictly inside (0, 1), the same in every process."""
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def _weights(members: Mapping[str, float] | Iterable[str]) -> dict[str, float]:
    weights = dict(members) if isinstance(members, Mapping) else dict.fromkeys(members, 1.0)
    for member, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            msg = f"member {member!r}: weight must be a number (got {weight!r})"
            raise TypeError(msg)
        if not math.isfinite(weight) or weight <= 0:
            msg = f"member {member!r}: weight must be finite and > 0 (got {weight!r})"
            raise ValueError(msg)
    return weights


def rendezvous_owner(key: str, members: Mapping[str, float] | Iterable[str]) -> str:
    """The member that owns ``key``: the same answer in every process for the same members.

    Args:
        key: The key (an account, a bot, a session).
        members: The live members' ids, or a mapping of id to capacity weight
            (a member of weight 2 gets about twice the keys of one of weight 1).

    Raises:
        ValueError: no members, or a weight that is not finite and positive.
        TypeError: a weight that is not a number.
    """
    weights = _weights(members)
    if not weights:
        msg = f"no members to place key {key!r} on"
        raise ValueError(msg)
    # ties are practically impossible (64-bit hashes); the id breaks them anyway
    return max(weights, key=lambda m: (-weights[m] / math.log(_uniform(key, m)), m))


def rendezvous_assignment(
    keys: Iterable[str], members: Mapping[str, float] | Iterable[str]
) -> dict[str, str]:
    """Each key's owner among ``members`` (see :func:`rendezvous_owner`)."""
    weights = _weights(members)
    return {key: rendezvous_owner(key, weights) for key in keys}
