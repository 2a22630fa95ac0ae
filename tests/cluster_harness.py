"""A real etcd on loopback and a session server that counts concurrent sessions per key.

Shared by tests/test_cluster.py and benchmarks/bench_cluster.py. :class:`Etcd`
runs Debian's ``etcd`` on free loopback ports with a temporary data directory
(restartable on the same data, so leases survive as in production);
:class:`SessionServer` is the stand-in for Telegram: each key's child holds a
TCP session with it, and it records every session's start and end, the most
sessions any key ever had at once, and whether fencing tokens only grew.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Etcd:
    """One etcd member on loopback, with its own data directory."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="etcd-test-"))
        self.port, self.peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (on the same data as before) and wait until /health says true."""
        peer = f"http://127.0.0.1:{self.peer}"
        self.process = subprocess.Popen(
            [ETCD, "--data-dir", str(self.data / "d"), "--name", "default",
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        # etcd says when it serves clients: wait for that line, not on a polling clock
        ready = threading.Event()
        threading.Thread(target=self._copy_log, args=(self.process, ready), daemon=True).start()
        if not ready.wait(timeout=60):  # a hang guard, not a timing assert
            raise RuntimeError(f"etcd did not serve clients: {self._log_tail()}")
        if self.process.poll() is not None:
            raise RuntimeError(f"etcd exited: {self._log_tail()}")
        if httpx.get(f"{self.url}/health", timeout=10).json().get("health") != "true":
            raise RuntimeError(f"etcd is not healthy: {self._log_tail()}")

    def _copy_log(self, process: subprocess.Popen[bytes], ready: threading.Event) -> None:
        """Copy etcd's log to the data dir; ``ready`` once it serves clients, or exits."""
        assert process.stderr is not None
        with process.stderr, (self.data / "log").open("ab") as log:
            for line in process.stderr:
                log.write(line)
                log.flush()
                if b"ready to serve client requests" in line:
                    ready.set()
        ready.set()  # it exited: the caller sees that through poll()

    def _log_tail(self) -> str:
        return (self.data / "log").read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL it (its data stays)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Kill it and remove its data."""
        self.kill()
        shutil.rmtree(self.data, ignore_errors=True)


@attrs.define
class Session:
    """One session a member's child held with the server."""

    key: str
    token: int
    member: str
    start: float
    end: float | None = None


@attrs.define(eq=False)
class SessionServer:
    """Counts concurrent sessions per key; wakes waiters on every change."""

    port: int = 0
    sessions: list[Session] = attrs.Factory(list)
    live: dict[str, list[Session]] = attrs.Factory(dict)
    max_concurrent: int = 0
    fencing_violations: list[str] = attrs.Factory(list)
    last_token: dict[str, int] = attrs.Factory(dict)
    _changed: trio.Event = attrs.Factory(trio.Event)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while b"\n" not in buffer:
                chunk = await stream.receive_some(256)
                if not chunk:
                    return
                buffer += chunk
            key, token, member = buffer.split(b"\n")[0].decode().split()
            session = Session(key, int(token), member, trio.current_time())
            self._begin(session)
            try:
                while await stream.receive_some(256):
                    pass
            finally:
                session.end = trio.current_time()
                self.live[key].remove(session)
                self._notify()

    def _begin(self, session: Session) -> None:
        live = self.live.setdefault(session.key, [])
        live.append(session)
        self.sessions.append(session)
        self.max_concurrent = max(self.max_concurrent, len(live))
        if session.token <= self.last_token.get(session.key, 0) and not any(
            s.token == session.token and s.member == session.member for s in self.sessions[:-1]
        ):
            self.fencing_violations.append(f"{session.key}: token {session.token} went back")
        self.last_token[session.key] = max(session.token, self.last_token.get(session.key, 0))
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def owners(self) -> dict[str, str]:
        """Each key with exactly one live session: the member holding it."""
        return {k: s[0].member for k, s in self.live.items() if len(s) == 1}

    async def wait_until(self, predicate: object) -> None:
        """Wait until ``predicate()`` holds (checked after every change)."""
        assert callable(predicate)
        while not predicate():
            await self._changed.wait()


async def start_member(
    nursery: trio.Nursery, member: str, etcd_url: str, port: int, keys: int, ttl: int
) -> trio.Process:
    """Start a member process of tests/cluster_member.py."""
    command = [sys.executable, "-m", "tests.cluster_member", member, etcd_url, str(port)]
    command += [str(keys), str(ttl)]
    process: trio.Process = await nursery.start(
        partial(trio.run_process, command, cwd=ROOT, check=False)
    )
    return process


@asynccontextmanager
async def serving_cli(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """``python -m supervisor run ARGS --http 127.0.0.1:0``; yields its base URL, then SIGTERMs it.

    Raises:
        AssertionError: it ended before it listened, or did not exit 0 on SIGTERM.
    """
    command = [sys.executable, "-m", "supervisor", "run", *args, "--http", "127.0.0.1:0"]
    environ = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, command, stderr=subprocess.PIPE, env=environ, check=False)
        )
        assert process.stderr is not None
        output = b""
        with trio.fail_after(60):  # a hang guard
            while (match := re.search(rb"http://127.0.0.1:(\d+)/", output)) is None:
                chunk = await process.stderr.receive_some()
                assert chunk, output
                output += chunk
        yield f"http://127.0.0.1:{int(match.group(1))}"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            assert await process.wait() == 0, output
