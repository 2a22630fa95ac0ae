"""Run asyncio libraries (Pyrogram) inside trio through trio-asyncio.

Two bridges: an executor bridge for ``run_in_executor``, and cancellation that sticks.

trio-asyncio 0.16's ``run_in_executor`` asserts that the executor is its own
``TrioExecutor``. Pyrogram hands it plain ``concurrent.futures.ThreadPoolExecutor``
objects: ``pyrogram.crypto_executor`` for every MTProto pack and unpack (so every
request), ``Client.executor`` for synchronous handlers and filters, and a throw-away
one-thread pool for each proxy connect. Without a bridge every request fails with a
bare ``AssertionError``.

The bridge chosen here replaces ``run_in_executor`` on one loop *instance* (not the
class, so nothing outside the loop it is installed on changes): a ``None`` executor
or a ``TrioExecutor`` goes to trio-asyncio as before; any other executor's job runs in
a trio worker thread (``trio.to_thread.run_sync``) run by a trio task of the loop. The
foreign executor itself is never used, so its threads are never created and no worker
thread can call back into a loop that has already closed: leaving ``open_loop()``
waits for the threads it started. Its semantics are kept: its jobs start in the order
they were submitted, at most ``max_workers`` at a time (a ``ThreadPoolExecutor``'s).
That matters: ``pyrogram.crypto_executor`` has one thread, so Pyrogram unpacks packets
in the order they arrived; run in parallel threads instead, a burst of 50 updates
reached the handlers out of order in 5 runs out of 5.

A second trap is cancellation. ``trio_asyncio.aio_as_trio`` cancels the asyncio task
once when the trio scope is cancelled, then waits for it. On Python 3.11,
``asyncio.wait_for`` swallows a cancellation that arrives just as the awaited future
completes (CPython gh-86296, fixed in 3.12), and Pyrogram awaits ``wait_for`` inside
loops that never end by themselves (``Session.start`` retries forever): the single
cancellation is lost and the trio deadline around ``connect()`` hangs for good.
Reproduced with a loop of short ``wait_for`` calls: ``move_on_after`` around
``aio_as_trio`` hung in every run; around :func:`aio_call` it returned every time.
:func:`aio_call` cancels again, every 10 ms, until the task ends, and
:func:`open_bridged_loop` does the same for the tasks left when the block is left.

A third trap is sockets. Pyrogram creates a socket per connection attempt and closes
only the stream writer: a socket whose connect failed (refused, timed out, cancelled)
is never closed, nor is a connection whose task was cancelled mid-start. The garbage
collector closes them later with a ``ResourceWarning`` in whatever code runs then
(a failure under ``-W error``). :func:`open_bridged_loop` therefore closes a socket
whose ``sock_connect`` failed at once, and, when the block is left, aborts the
transports still open and closes the sockets still open that the loop connected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeAlias, TypeVar

import trio
import trio_asyncio  # type: ignore[import-untyped, unused-ignore]

__all__ = ["aio_call", "install_executor_bridge", "open_bridged_loop", "pending_tasks"]

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

_MARKER = "_trio_supervision_executor_bridge"
_RECANCEL_INTERVAL = 0.01
_GIVE_UP_AFTER = 5.0


_Job: TypeAlias = "tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]"


class _ExecutorQueue:
    """One foreign executor's jobs on one loop: started in order, ``max_workers`` at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_workers: int | None) -> None:
        self._loop = loop
        self._send, self._receive = trio.open_memory_channel[_Job](math.inf)
        self._limiter = None if max_workers is None else trio.CapacityLimiter(max_workers)
        self._serving = False

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._send.send_nowait((future, func, args))
        if not self._serving:
            self._serving = True
            self._loop.trio_as_future(self._serve)  # type: ignore[attr-defined]
        return future

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    job = self._receive.receive_nowait()
                except trio.WouldBlock:
                    # no await between the check and the flag: the next submit starts a server
                    self._serving = False
                    break
                token = object()
                if self._limiter is not None:
                    await self._limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._run, job, token)

    async def _run(self, job: _Job, token: object) -> None:
        future, func, args = job
        try:
            if future.cancelled():
                return
            try:
                result = await trio.to_thread.run_sync(func, *args)
            except Exception as error:
                if not future.cancelled():
                    future.set_exception(error)
            else:
                if not future.cancelled():
                    future.set_result(result)
        finally:
            if self._limiter is not None:
                self._limiter.release_on_behalf_of(token)


def install_executor_bridge(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop.run_in_executor`` accept any ``concurrent.futures.Executor``.

    Idempotent. Only the given loop instance is changed.

    Args:
        loop: a trio-asyncio loop, as yielded by ``trio_asyncio.open_loop()``.

    Raises:
        TypeError: if ``loop`` is not a trio-asyncio loop.
    """
    if not isinstance(loop, trio_asyncio.BaseTrioEventLoop):
        raise TypeError(f"not a trio-asyncio loop: {loop!r}")
    if getattr(loop, _MARKER, False):
        return
    original = loop.run_in_executor
    queues: weakref.WeakKeyDictionary[concurrent.futures.Executor, _ExecutorQueue] = (
        weakref.WeakKeyDictionary()
    )

    @functools.wraps(original)
    def run_in_executor(
        executor: concurrent.futures.Executor | None,
        func: Callable[..., Any],
        *args: Any,
    ) -> asyncio.Future[Any]:
        if executor is None or isinstance(executor, trio_asyncio.TrioExecutor):
            delegated: asyncio.Future[Any] = original(executor, func, *args)
            return delegated
        queue = queues.get(executor)
        if queue is None:
            queue = _ExecutorQueue(loop, getattr(executor, "_max_workers", None))
            queues[executor] = queue
        return queue.submit(func, args)

    loop.run_in_executor = run_in_executor
    setattr(loop, _MARKER, True)


class _Connections:
    """What a loop connected: closed when the loop's block is left, if still open."""

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()


def _track_connections(loop: asyncio.AbstractEventLoop) -> _Connections:
    """Record the sockets and transports ``loop`` connects; close failed connects at once."""
    tracked = _Connections()
    sock_connect = loop.sock_connect
    create_connection = loop.create_connection

    async def tracking_sock_connect(sock: socket.socket, address: Any) -> None:
        tracked.sockets.add(sock)
        try:
            await sock_connect(sock, address)
        except BaseException:
            # useless now; closed here rather than by the GC, with a ResourceWarning
            sock.close()
            raise

    async def tracking_create_connection(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await create_connection(*args, **kwargs)
        tracked.transports.add(transport)
        _set_nodelay(transport.get_extra_info("socket"))
        return transport, protocol

    loop.sock_connect = tracking_sock_connect  # type: ignore[method-assign]
    loop.create_connection = tracking_create_connection  # type: ignore[method-assign]
    return tracked


def _set_nodelay(sock: Any) -> None:
    # asyncio turns Nagle off only for sockets made with proto=IPPROTO_TCP; Pyrogram
    # makes its own with proto 0, so a small write behind an unacknowledged one would
    # wait for the peer's delayed ACK (40 ms on Linux) before leaving the machine
    tcp = sock is not None and sock.type == socket.SOCK_STREAM
    if tcp and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close_connections(tracked: _Connections) -> None:
    with trio.CancelScope(shield=True) as shield:
        shield.deadline = trio.current_time() + _GIVE_UP_AFTER
        aborted = [t for t in tracked.transports if not t.is_closing()]
        for transport in aborted:
            transport.abort()  # type: ignore[attr-defined]
        if aborted:
            # abort() closes the socket in a callback: let the loop run it
            await aio_call(asyncio.sleep, 0)
            await aio_call(asyncio.sleep, 0)
    for sock in list(tracked.sockets):
        if sock.fileno() != -1:
            sock.close()


@asynccontextmanager
async def open_bridged_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """Open a trio-asyncio loop with the executor bridge installed.

    Construct Pyrogram's ``Client`` inside the block (``Client.__init__`` captures the
    current loop), and await its coroutines through :func:`aio_call`.
    Leaving the block cancels every asyncio task still running on the loop, which is
    the reliable way to end Pyrogram's background reconnect tasks; tasks are cancelled
    again every 10 ms (for at most 5 s) until they are gone, since trio-asyncio's own
    shutdown cancels each task once and then waits for it, forever if the cancellation
    was swallowed (see :func:`aio_call`). Then the connections the loop opened and
    nobody closed are closed (see the module's docstring), so no socket outlives it.

    Yields:
        The running trio-asyncio loop.
    """
    async with trio_asyncio.open_loop() as loop:
        install_executor_bridge(loop)
        tracked = _track_connections(loop)
        try:
            yield loop
        finally:
            await _cancel_until_gone(loop)
            await _close_connections(tracked)


async def _cancel_until_gone(loop: asyncio.AbstractEventLoop) -> None:
    with trio.CancelScope(shield=True) as shield:
        shield.deadline = trio.current_time() + _GIVE_UP_AFTER
        while tasks := pending_tasks(loop):
            for task in tasks:
                task.cancel()
            await trio.sleep(_RECANCEL_INTERVAL)
    if leftover := pending_tasks(loop):
        log.warning("asyncio tasks ignored cancellation for %s s: %r", _GIVE_UP_AFTER, leftover)


def pending_tasks(loop: asyncio.AbstractEventLoop) -> set[asyncio.Task[Any]]:
    """Return the asyncio tasks of ``loop`` that have not finished yet.

    Args:
        loop: the loop to inspect.

    Returns:
        The unfinished tasks (``asyncio.all_tasks`` for that loop).
    """
    return asyncio.all_tasks(loop)


async def aio_call(
    fn: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Await an asyncio coroutine function from trio, with cancellation that sticks.

    Like ``trio_asyncio.aio_as_trio(fn)(*args, **kwargs)``, but when the calling trio
    scope is cancelled the asyncio task is cancelled again every 10 ms until it ends
    (for at most 5 s, shielded), so a cancellation swallowed by ``asyncio.wait_for``
    on Python 3.11 does not leave the caller waiting forever. Must run inside
    ``trio_asyncio.open_loop()`` (in the task that opened it, or one started inside).

    Args:
        fn: an asyncio coroutine function (e.g. ``client.connect``).
        *args: its positional arguments.
        **kwargs: its keyword arguments.

    Returns:
        What the coroutine returns.

    Raises:
        RuntimeError: outside ``trio_asyncio.open_loop()``.
    """
    loop = trio_asyncio.current_loop.get()
    if loop is None:
        raise RuntimeError("aio_call() must run inside trio_asyncio.open_loop()")
    coro = fn(*args, **kwargs)
    try:
        task: asyncio.Future[T] = asyncio.ensure_future(coro, loop=loop)
    except BaseException:
        if asyncio.iscoroutine(coro):
            coro.close()
        raise
    done = trio.Event()
    task.add_done_callback(lambda _: done.set())
    try:
        await done.wait()
    except trio.Cancelled:
        with trio.CancelScope(shield=True) as shield:
            shield.deadline = trio.current_time() + _GIVE_UP_AFTER
            while not task.done():
                task.cancel()
                with trio.move_on_after(_RECANCEL_INTERVAL):
                    await done.wait()
        if not task.done():
            log.warning("asyncio task %r ignored cancellation for %s s", task, _GIVE_UP_AFTER)
        raise
    return task.result()
