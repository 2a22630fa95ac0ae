"""A member of the test cluster: ``python -m tests.cluster_member MEMBER ETCD_URL PORT KEYS TTL``.

It opens a keyed pool of ``KEYS`` keys (``key-0`` ...) on etcd at ``ETCD_URL``;
each key's child holds a session with the test's session server on ``PORT``
(sending ``key token member``) until it is stopped. SIGTERM leaves the cluster
cleanly (hands every key over); SIGKILL is a crash.
"""

from __future__ import annotations

import signal
import sys

import trio

import specs
from supervisor.cluster import ClusterConfig, current_claim, open_keyed_pool


async def session(port: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Hold one session for the current key, announcing its fencing token."""
    claim = current_claim()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{claim.key} {claim.token} {claim.member}\n".encode())
        task_status.started()
        async for _ in stream:
            pass
    raise ConnectionError(f"session server closed {claim.key}")


async def main(member: str, etcd: str, port: int, keys: int, ttl: int) -> None:
    config = ClusterConfig(endpoints=[etcd], member=member, ttl=ttl, prefix="/test/")

    def child(key: str) -> specs.ChildSpec:
        return specs.ChildSpec(id="session", start=session, args=(port,), shutdown=0.1)

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_keyed_pool(
            [f"key-{n}" for n in range(keys)], child, cluster=config, hooks=[]
        ):
            async for _ in signals:
                return


if __name__ == "__main__":
    name, url, port_text, keys_text, ttl_text = sys.argv[1:6]
    trio.run(main, name, url, int(port_text), int(keys_text), int(ttl_text))
