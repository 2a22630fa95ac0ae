"""Scale-out: sharding by a stable hash, and a process supervisor restarting a tree that gave up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import specs
import supervisor

from .scaling_targets import ACCOUNTS

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 3


@given(st.text(max_size=40), st.integers(1, 64))
def test_shard_is_in_range(key: str, shards: int) -> None:
    """Every key maps to a shard in range."""
    assert 0 <= specs.shard_for(key, shards) < shards


def test_shard_is_stable_across_processes() -> None:
    """Another interpreter (other hash seed) puts every key in the same shard."""
    keys = [f"user-{n}" for n in range(50)]
    code = "import specs, sys; print([specs.shard_for(f'user-{n}', 7) for n in range(50)])"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == str([specs.shard_for(k, 7) for k in keys])


def test_shards_spread_evenly() -> None:
    """10,000 keys over 8 shards: each shard gets within 10% of its share."""
    counts = Counter(specs.shard_for(f"account-{n}", 8) for n in range(10_000))
    assert all(abs(count - 1250) < 125 for count in counts.values())


def test_shard_rejects_bad_counts() -> None:
    """shards must be a positive integer."""
    with pytest.raises(ValueError, match="shards"):
        specs.shard_for("x", 0)


@attrs.define
class Changes:
    """Wakes waiters whenever the test's world changes (a session, an exit)."""

    event: trio.Event = attrs.Factory(trio.Event)

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.event.wait()


@attrs.define
class ControlServer:
    """The accounts' server: refuses one shard's sessions for a while, records who connects."""

    changes: Changes
    refuse_shard: int | None = None
    refusals_left: int = 0
    sessions: list[tuple[int, int, str]] = attrs.Factory(list)
    scopes: dict[int, list[trio.CancelScope]] = attrs.Factory(dict)

    def cut(self, shard: int) -> None:
        """Close every session of a shard (its workers see the connection end)."""
        for scope in self.scopes.pop(shard, []):
            scope.cancel()
        self.sessions = [s for s in self.sessions if s[0] != shard]

    async def handle(self, stream: trio.SocketStream) -> None:
        line = await stream.receive_some(256)
        if len(line.split()) != 3:
            return  # a process that died before introducing itself
        shard, pid, name = line.decode().split()
        if int(shard) == self.refuse_shard and self.refusals_left > 0:
            self.refusals_left -= 1
            await stream.send_all(b"no\n")
            return
        self.sessions.append((int(shard), int(pid), name))
        self.changes.notify()
        await stream.send_all(b"ok\n")
        with trio.CancelScope() as scope:
            self.scopes.setdefault(int(shard), []).append(scope)
            await trio.sleep_forever()


@attrs.define
class ProcessSupervisor:
    """What systemd does for ``Restart=on-failure`` units: restart non-zero exits (not 78)."""

    port: int
    changes: Changes
    exits: list[tuple[int, int]] = attrs.Factory(list)  # (shard, code)
    starts: Counter[int] = attrs.Factory(Counter)
    processes: dict[int, trio.Process] = attrs.Factory(dict)

    async def unit(self, shard: int) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SHARD": str(shard),
            "SHARDS": str(SHARDS),
            "CONTROL_PORT": str(self.port),
        }
        command = [sys.executable, "-m", "supervisor", "run", "tests.scaling_targets:tree"]
        while True:
            self.starts[shard] += 1
            process = await trio.lowlevel.open_process(command, env=env, stderr=subprocess.DEVNULL)
            self.processes[shard] = process
            code = await process.wait()
            self.exits.append((shard, code))
            self.changes.notify()
            if code in (0, supervisor.EXIT_BAD_SPEC) or self.starts[shard] > 5:
                return


async def test_a_shard_that_gave_up_is_restarted_by_its_process_supervisor() -> None:
    """Three shard processes: the one whose root gives up exits 70 and is restarted alone."""
    changes = Changes()
    control = ControlServer(changes)
    mine = [a for a in ACCOUNTS if specs.shard_for(a, SHARDS) == 1]
    assert mine, "shard 1 needs accounts for this test"
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, control.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        units = ProcessSupervisor(port, changes)
        with trio.fail_after(60):
            async with trio.open_nursery() as processes:
                for shard in range(SHARDS):
                    processes.start_soon(units.unit, shard)
                await changes.until(
                    lambda: len({name for _, _, name in control.sessions}) == len(ACCOUNTS)
                )
                # shard 1 loses its sessions and is refused: its root gives up
                control.refuse_shard, control.refusals_left = 1, 100
                control.cut(1)
                await changes.until(
                    lambda: any(code == supervisor.EXIT_GAVE_UP for _, code in units.exits)
                )
                control.refusals_left = 0
                await changes.until(
                    lambda: units.starts[1] == 2 and _shard_connected(control, units, 1)
                )
                for process in units.processes.values():
                    process.send_signal(signal.SIGTERM)
        nursery.cancel_scope.cancel()
    assert (1, supervisor.EXIT_GAVE_UP) in units.exits
    assert units.starts == Counter({0: 1, 1: 2, 2: 1})
    assert sorted(code for shard, code in units.exits if shard != 1) == [0, 0]


def _shard_connected(control: ControlServer, units: ProcessSupervisor, shard: int) -> bool:
    pid = units.processes[shard].pid
    return any(s == shard and p == pid for s, p, _ in control.sessions)
