"""A keyed pool over many member processes, at most one owner per key (etcd).

``async with open_keyed_pool(keys, factory, cluster=config) as pool`` runs each
key's child (``factory(key) -> ChildSpec``) on exactly one live member, placed
by rendezvous hashing, moved on joins, leaves and failures, and never on two
members at once; ``cluster=None`` runs every key in this process. A
:class:`KeyedPoolSpec` is such a pool as a whole program (``supervisor.run``,
``python -m supervisor run``). See ``docs/scaling.md``.
"""

from __future__ import annotations

from specs._surface import publish as _publish

from ._cluster import Claim as Claim
from ._cluster import ClusterConfig as ClusterConfig
from ._cluster import ClusterConfigError as ClusterConfigError
from ._cluster import KeyedPool as KeyedPool
from ._cluster import KeyedPoolSpec as KeyedPoolSpec
from ._cluster import cluster_config_from_env as cluster_config_from_env
from ._cluster import current_claim as current_claim
from ._cluster import open_keyed_pool as open_keyed_pool
from ._etcd import EtcdClient as EtcdClient
from ._etcd import EtcdRequestFailed as EtcdRequestFailed
from ._etcd import EtcdUnavailable as EtcdUnavailable
from ._etcd import KeyValue as KeyValue
from ._etcd import WatchCompacted as WatchCompacted
from ._etcd import WatchEvent as WatchEvent
from ._placement import rendezvous_assignment as rendezvous_assignment
from ._placement import rendezvous_owner as rendezvous_owner

__all__ = [
    "Claim",
    "ClusterConfig",
    "ClusterConfigError",
    "EtcdClient",
    "EtcdRequestFailed",
    "EtcdUnavailable",
    "KeyValue",
    "KeyedPool",
    "KeyedPoolSpec",
    "WatchCompacted",
    "WatchEvent",
    "cluster_config_from_env",
    "current_claim",
    "open_keyed_pool",
    "rendezvous_assignment",
    "rendezvous_owner",
]

_publish(__name__, globals())
