"""A sharded tree for the scale-out test: one process per shard, run by ``python -m supervisor``.

Each process reads ``SHARD``/``SHARDS``/``CONTROL_PORT`` from its environment,
starts one worker per account of its shard, and each worker holds a
connection to the test's control server; when the server refuses a shard,
its workers crash until the root gives up and the process exits 70.
"""

from __future__ import annotations

import os

import trio

import specs

ACCOUNTS = [f"account-{n}" for n in range(12)]


async def account(name: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Hold a session for one account with the control server; crash when it is refused."""
    port = int(os.environ["CONTROL_PORT"])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{os.environ['SHARD']} {os.getpid()} {name}\n".encode())
        answer = await stream.receive_some(64)
        if answer != b"ok\n":
            raise ConnectionError(f"control server refused {name}: {answer!r}")
        task_status.started()
        async for _ in stream:
            pass
        raise ConnectionError(f"control server closed {name}")


def tree() -> specs.SupervisorSpec:
    """This process's shard of the accounts."""
    shard, shards = int(os.environ["SHARD"]), int(os.environ["SHARDS"])
    mine = [a for a in ACCOUNTS if specs.shard_for(a, shards) == shard]
    return specs.SupervisorSpec(
        name=f"shard-{shard}",
        intensity=2,
        period=10,
        children=[specs.ChildSpec(id=a, start=account, args=(a,)) for a in mine],
    )
