"""An ordered lane: one client's ordered commands pipelined over one connection.

Publishes must reach Redis — hence get their offsets — in the order they were
submitted, and come back to the node in that order, so the local fan-out follows the
offsets. Redis runs the commands of one connection in order and answers them in order,
so the lane keeps one dedicated connection: what was submitted during a loop iteration
is written as one batch when the iteration ends (a callback writing into the transport;
a task only to connect or to wait for a full send buffer), without waiting for earlier
batches' replies, and a *reader* task takes the replies off the connection first-in
first-out and resolves a whole batch at once (its publications then fan out in one loop
iteration, and subscribers' outboxes coalesce them). A busy lane has several batches on
the wire instead of making callers wait for the previous round trip.

Compared with one redis-py pipeline per batch (borrowed from the pool, one at a time),
a publish skips the wait for the batch before it and redis-py's per-pipeline work.

Guarantees:

- Replies resolve callers in submission order; a batch resolves together.
- ``wait`` (replicas, timeout ms): the batch ends with one ``WAIT`` (it covers every
  write before it on the connection); a command asking for more replicas than were
  confirmed fails with ReplicasMissing carrying its own reply.
- Every new connection first loads the ``preamble`` commands (the engine's Lua scripts,
  ``SCRIPT LOAD``): a restarted or failed-over server answers the lane's ``EVALSHA``
  without NOSCRIPT. Their replies are read and dropped.

Error handling: an error reply fails only its own command. A broken connection (socket
error, a batch's replies not all in within the connection's ``socket_timeout``,
Sentinel's "previous master is now a replica") fails every command written and not yet
answered — their effect is unknown, so they are never re-sent — and the connection is
dropped; commands not yet written go out on another connection of the client's pool
(Sentinel's looks the primary up again). A connection the server closed while the lane
was idle is noticed before writing (end of stream), so a restart does not fail the
first publish after it.

Resource handling: the lane holds one connection of the client's pool until it breaks or
``close()`` (which fails what is outstanding) gives it back, disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

__all__ = ["Item", "Lane", "ReplicasMissing", "Wait", "pack", "resolve", "wait_command"]

Wait = tuple[int, int]  # (replicas, timeout ms) for a WAIT after the batch
Item = tuple[bytes, "asyncio.Future[Any]", Wait | None]  # (packed command, reply, wait)
# Above this many bytes waiting in the socket's send buffer, the next batch waits for it
# to drain (Redis is not reading: a stalled server must not grow the heap).
_HIGH_WATER = 1 << 20


class ReplicasMissing(Exception):
    """The command ran, but ``WAIT`` after its batch counted fewer replicas than it
    asked for; ``result`` is the command's own reply."""

    def __init__(self, result: Any, confirmed: int, required: int) -> None:
        super().__init__(f"{confirmed} of {required} replicas confirmed")
        self.result, self.confirmed, self.required = result, confirmed, required


@dataclass(slots=True)
class _Batch:
    """One write: ``skip`` preamble replies, then one per item, then WAIT's if ``waits``."""

    items: list[Item]
    skip: int
    waits: bool


def resolve(items: list[Item], results: list[Any], confirmed: Any) -> None:
    """Hand each caller its reply (``confirmed``: WAIT's reply, or None without WAIT)."""
    if isinstance(confirmed, BaseException):
        confirmed = 0  # WAIT itself failed: nothing is confirmed
    for (_, future, wait), result in zip(items, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        elif wait is not None and confirmed < wait[0]:
            future.set_exception(ReplicasMissing(result, int(confirmed), wait[0]))
        else:
            future.set_result(result)


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP (what redis-py's pack_command makes, for the argument types
    the engine sends: bytes, str as UTF-8, int, float). Raises TypeError for others."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            value = arg
        elif isinstance(arg, str):
            value = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            value = b"%d" % arg
        elif isinstance(arg, float):
            value = repr(arg).encode()
        else:
            raise TypeError(f"cannot send a {type(arg).__name__} to redis: {arg!r}")
        parts += (b"$%d\r\n" % len(value), value, b"\r\n")
    return b"".join(parts)


def wait_command(items: list[Item]) -> tuple[Any, ...] | None:
    """The WAIT covering ``items`` (the most replicas and the longest timeout asked)."""
    waits = [wait for _, _, wait in items if wait is not None]
    if not waits:
        return None
    return ("WAIT", max(w[0] for w in waits), max(w[1] for w in waits))


async def _reply(conn: Any) -> Any:
    """The next reply on ``conn`` (the caller bounds the wait)."""
    try:
        return await conn.read_response(timeout=math.inf)
    except ResponseError as error:  # an error reply: this command's alone
        return error


class Lane:
    """See the module docstring. ``client``: a redis.asyncio Redis (the lane takes a
    connection of its pool); ``preamble``: commands sent first on every connection taken."""

    def __init__(self, client: Any, preamble: list[tuple[Any, ...]] | None = None) -> None:
        self._pool = client.connection_pool
        self._preamble = [pack(command) for command in preamble or []]
        self._conn: Any = None
        self._fresh = False  # the connection has not had its preamble yet
        self._buffer: list[Item] = []  # submitted, not yet written
        self._sent: deque[_Batch] = deque()  # written, replies outstanding
        self._scheduled = False  # a _flush is queued
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dropping: asyncio.Task[None] | None = None  # a failed write's clean-up
        self._closed = False
        self.batches = 0
        self.commands = 0

    def submit(self, args: tuple[Any, ...], wait: Wait | None = None) -> asyncio.Future[Any]:
        """Queue ``args`` (a whole command) for the lane's next write; the future gets
        its reply. Raises ConnectionError once the lane is closed, TypeError for an
        argument Redis cannot take (see pack)."""
        if self._closed:
            raise ConnectionError("redis lane closed")
        command = pack(args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._buffer.append((command, future, wait))
        if not self._scheduled:
            # After the callbacks already queued: everything submitted in this loop
            # iteration leaves in the same write.
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    async def open(self) -> None:
        """Take a connection now and load the preamble on it (at the engine's start:
        its first publish then pays neither). A failure is not raised: the next batch
        tries again, as always."""
        if self._closed or self._conn is not None or self._writer is not None:
            return
        self._writer = asyncio.get_running_loop().create_task(self._write(connect=True))
        await asyncio.shield(self._writer)

    async def close(self) -> None:
        self._closed = True
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        error = ConnectionError("redis lane closed")
        self._fail_sent(error)
        self._fail(self._buffer, error)
        self._buffer = []
        await self._drop(self._conn)

    # -- writing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what is buffered now if the connection takes it without waiting (the
        common case: no task, no await); else hand it to the writer task, which
        (re)connects or waits for the socket's buffer to drain."""
        self._scheduled = False
        if not self._buffer or self._writer is not None or self._closed:
            return  # a running writer takes the buffer with it
        conn = self._conn
        if conn is not None and self._writable(conn):
            items, self._buffer = self._buffer, []
            self._send(conn, items)
        else:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _writable(self, conn: Any) -> bool:
        """True if ``conn`` is open and its send buffer below the high-water mark."""
        writer, stream = getattr(conn, "_writer", None), getattr(conn, "_reader", None)
        if writer is None or stream is None or stream.at_eof():
            return False
        transport = writer.transport
        return not transport.is_closing() and transport.get_write_buffer_size() < _HIGH_WATER

    def _send(self, conn: Any, items: list[Item]) -> None:
        """Write ``items`` as one batch on ``conn`` (synchronously, into the transport)."""
        commands = [command for command, _, _ in items]
        skip = 0
        if self._fresh:
            self._fresh, skip = False, len(self._preamble)
            commands[:0] = self._preamble
        wait = wait_command(items)
        if wait is not None:
            commands.append(pack(wait))
        self._sent.append(_Batch(items, skip, wait is not None))
        if items:  # the preamble alone (open) is no batch of the caller's
            self.batches += 1
            self.commands += len(items)
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = loop.create_task(self._read(conn))
        try:
            conn._writer.write(b"".join(commands))
        except Exception as error:  # the batch is in _sent: it fails with the others
            self._dropping = loop.create_task(self._broken(conn, error))

    async def _write(self, connect: bool = False) -> None:
        """The slow path: a connection to make (``connect``: even with nothing to
        send), or a full send buffer to drain."""
        try:
            while self._buffer or connect:
                conn = self._conn
                try:
                    if conn is None or not self._writable(conn):
                        conn = await self._connection()
                except Exception as error:  # unreachable: these were never written
                    items, self._buffer, connect = self._buffer, [], False
                    self._fail(items, error)
                    continue
                items, self._buffer, connect = self._buffer, [], False
                if not items and not self._fresh:
                    continue
                self._send(conn, items)  # with no items: the preamble alone
                try:
                    async with asyncio.timeout(conn.socket_timeout):
                        await conn._writer.drain()
                except Exception as error:
                    await self._broken(conn, error)
        finally:
            self._writer = None
            if self._buffer and not self._closed:  # cancelled with commands queued
                self._fail(self._buffer, ConnectionError("redis lane writer ended"))
                self._buffer = []

    async def _connection(self) -> Any:
        """A connection to write on: the lane's if it is open (its buffer drained), else
        another from the pool. Error handling: the pool's errors propagate."""
        conn = self._conn
        if conn is not None:
            writer, stream = getattr(conn, "_writer", None), getattr(conn, "_reader", None)
            if writer is None or stream is None or stream.at_eof() or \
                    writer.transport.is_closing():
                # Closed by the server (a restart, an idle timeout): replies still
                # outstanding on it are lost with it.
                await self._broken(conn, ConnectionError("redis closed the connection"))
                conn = None
        if conn is None:
            # From the client's pool: its settings, and its checks on a connection it
            # hands out (a fresh one if an idle one was closed). Kept until it breaks.
            conn = await self._pool.get_connection()
            self._conn, self._fresh = conn, True
        return conn

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, conn: Any) -> None:
        """Replies of ``conn``'s batches, in order, each batch within the connection's
        socket timeout."""
        timeout = conn.socket_timeout
        try:
            while self._sent and self._conn is conn:
                batch = self._sent[0]
                try:
                    async with asyncio.timeout(timeout):
                        for _ in range(batch.skip):
                            await _reply(conn)
                        results = [await _reply(conn) for _ in batch.items]
                        confirmed = await _reply(conn) if batch.waits else None
                except Exception as error:
                    await self._broken(conn, error)
                    return
                self._sent.popleft()
                resolve(batch.items, results, confirmed)
        finally:
            self._reader = None
            if self._sent and self._conn is not None and not self._closed:
                # Batches were written on a newer connection while this one ended.
                self._reader = asyncio.get_running_loop().create_task(self._read(self._conn))

    # -- failures --------------------------------------------------------------------------

    async def _broken(self, conn: Any, error: Exception) -> None:
        """``conn`` failed: everything written on it fails, it is dropped."""
        if conn is not self._conn:
            return
        self._conn = None
        self._fail_sent(error)
        await self._drop(conn)

    def _fail_sent(self, error: BaseException) -> None:
        sent, self._sent = self._sent, deque()
        for batch in sent:
            self._fail(batch.items, error)

    @staticmethod
    def _fail(items: list[Item], error: BaseException) -> None:
        for _, future, _ in items:
            if not future.done():
                future.set_exception(error)

    async def _drop(self, conn: Any) -> None:
        """Disconnect ``conn`` and give it back to the pool (which reconnects it when
        it hands it out again)."""
        if conn is None:
            return
        if conn is self._conn:
            self._conn = None
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)
