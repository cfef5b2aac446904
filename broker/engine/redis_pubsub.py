"""The pub/sub side of the Redis engine: one reader per route, with its own reconnects.

A ``PubSubReader`` keeps a raw connection to one server subscribed to a set of pub/sub
channel names. It never relies on the client library's silent reconnect: when the
connection fails it backs off (exponential with jitter), opens a new connection,
subscribes every name again and tells the engine which names were (re)subscribed,
*before* dispatching any message read after them. The engine uses that moment to read
baselines or to catch up from the history stream, so nothing published during a cut
is silently lost.

``Backoff`` and ``PositionTracker`` are plain classes, tested without a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from redis.asyncio.connection import Connection

from broker.types import StreamPosition

__all__ = ["Backoff", "PositionTracker", "PubSubReader", "ReaderHooks", "Verdict"]

log = logging.getLogger(__name__)

_BATCH = 500  # names per SUBSCRIBE command when re-subscribing
_READ_AHEAD = 1000  # responses read before handling subscribe confirmations


class Backoff:
    """Exponential backoff with jitter: ``min(cap, base * 2**n) * uniform(0.5, 1)``.

    The jitter keeps a fleet of nodes cut off by one Redis restart from reconnecting in
    lock-step. ``reset()`` after a success.
    """

    def __init__(
        self, base: float = 0.05, cap: float = 5.0, rand: Callable[[], float] = random.random
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got {base}, {cap}")
        self.base, self.cap, self._rand = base, cap, rand
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return delay * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self.attempt = 0


class Verdict(Enum):
    DELIVER = "deliver"  # the next offset (or no history): deliver and advance
    DUPLICATE = "duplicate"  # already delivered or covered by the baseline: drop
    GAP = "gap"  # offsets are missing before it: catch up from the stream first
    NEW_EPOCH = "new_epoch"  # the stream was recreated: tell the node, then deliver


class PositionTracker:
    """The last stream position this node has seen per subscribed channel.

    A position with epoch ``""`` means "no stream existed at the baseline", so any
    epoch that shows up later is new, starting at offset 1.
    """

    def __init__(self) -> None:
        self._last: dict[str, StreamPosition] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._last

    def get(self, channel: str) -> StreamPosition | None:
        return self._last.get(channel)

    def set(self, channel: str, position: StreamPosition) -> None:
        self._last[channel] = position

    def forget(self, channel: str) -> None:
        self._last.pop(channel, None)

    def judge(self, channel: str, offset: int, epoch: str) -> Verdict:
        """What to do with a live publication at (offset, epoch); 0 = no history."""
        last = self._last.get(channel)
        if offset == 0 or last is None:
            return Verdict.DELIVER
        if last.epoch == "":
            return Verdict.DELIVER if offset == 1 else Verdict.GAP
        if epoch != last.epoch:
            return Verdict.NEW_EPOCH
        if offset <= last.offset:
            return Verdict.DUPLICATE
        return Verdict.DELIVER if offset == last.offset + 1 else Verdict.GAP

    def __len__(self) -> int:
        return len(self._last)


class ReaderHooks:
    """What a reader calls back; the engine implements them.

    ``subscribed(names, route)`` is awaited before any later message is dispatched;
    ``message(name, data)`` is synchronous; ``reconnecting(route)`` runs before each
    reconnect (Cluster: re-learn slots and move channels to their new owner).
    """

    def __init__(
        self,
        subscribed: Callable[[list[str], str], Awaitable[None]],
        message: Callable[[str, bytes], Awaitable[None] | None],
        reconnecting: Callable[[str], Awaitable[None]],
    ) -> None:
        self.subscribed, self.message, self.reconnecting = subscribed, message, reconnecting


class PubSubReader:
    """One pub/sub connection for the names of one route; see the module docstring.

    Error handling: every connection or protocol failure ends the current connection
    and is retried after a backoff; ``last_error`` and ``reconnects`` record it. A
    failing hook is treated like a connection failure (its names are re-subscribed and
    caught up again). Nothing escapes the task except cancellation.
    """

    def __init__(
        self,
        route: str,
        opener: Callable[[str], Awaitable[Connection]],
        hooks: ReaderHooks,
        *,
        sharded: bool,
        backoff: Backoff,
    ) -> None:
        self.route, self._open, self._hooks, self._backoff = route, opener, hooks, backoff
        self._sub, self._unsub = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else (
            "SUBSCRIBE", "UNSUBSCRIBE")
        self.names: set[str] = set()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_error = ""
        self.rtt: float | None = None
        self._conn: Connection | None = None
        self._ping_sent: float | None = None
        self._failed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"redis-pubsub-{self.route}"
            )

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()

    @property
    def up(self) -> bool:
        return self._conn is not None and self.connected.is_set()

    # -- commands from the engine -------------------------------------------------------

    async def send(self, *args: Any) -> bool:
        """Send a command on the live connection; False if there is none (nothing sent).

        The check and the write happen without an await in between, so a command is
        never written to a connection the reader has given up (redis-py would reconnect
        it silently).
        """
        conn = self._conn
        if conn is None or self._failed or not conn.is_connected or not self.connected.is_set():
            return False
        await conn.send_command(*args, check_health=False)
        return True

    async def subscribe(self, name: str) -> bool:
        self.names.add(name)
        return await self.send(self._sub, name)

    async def unsubscribe(self, name: str) -> None:
        self.names.discard(name)
        with contextlib.suppress(Exception):  # on failure the reconnect will not re-add it
            await self.send(self._unsub, name)

    async def ping(self, timeout: float) -> None:
        """PING over the pub/sub connection; a missing PONG within ``timeout`` forces a
        reconnect (a half-open TCP connection would otherwise look healthy forever)."""
        if self._ping_sent is not None and time.monotonic() - self._ping_sent > timeout:
            self._fail(f"no PONG within {timeout} s")
            return
        if self._ping_sent is None:
            sent_at = time.monotonic()
            with contextlib.suppress(Exception):
                if await self.send("PING"):
                    self._ping_sent = sent_at

    def _fail(self, reason: str) -> None:
        self.last_error = reason
        conn = self._conn
        if conn is not None and not self._failed:
            self._failed = True
            self.connected.clear()
            # Aborting the transport wakes the blocked read with an error.
            writer = getattr(conn, "_writer", None)
            if writer is not None:
                writer.transport.abort()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        first = True
        while True:
            if not first:
                self.reconnects += 1
                await asyncio.sleep(self._backoff.next_delay())
                with contextlib.suppress(Exception):
                    await self._hooks.reconnecting(self.route)
            first = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("redis pub/sub %s lost: %s", self.route, self.last_error)
            finally:
                await self._drop_connection()

    async def _session(self) -> None:
        conn = await self._open(self.route)
        self._conn, self._ping_sent, self._failed = conn, None, False
        names = sorted(self.names)
        for i in range(0, len(names), _BATCH):
            await conn.send_command(self._sub, *names[i : i + _BATCH], check_health=False)
        self.connected.set()
        self._backoff.reset()
        while True:
            responses = [await conn.read_response(timeout=math.inf, push_request=True)]
            while len(responses) < _READ_AHEAD and await conn.can_read():
                responses.append(await conn.read_response(timeout=math.inf, push_request=True))
            confirmed = [self._name(r) for r in responses if self._kind(r) in _CONFIRMS]
            if confirmed:
                await self._hooks.subscribed(confirmed, self.route)
            for response in responses:
                pending = self._dispatch(response)
                if pending is not None:
                    await pending
            if self._failed:
                raise ConnectionError(self.last_error or "connection dropped")

    @staticmethod
    def _kind(response: Any) -> bytes:
        if isinstance(response, list) and response and isinstance(response[0], bytes):
            return response[0].lower()
        return b""

    @staticmethod
    def _name(response: list[Any]) -> str:
        name = response[1]
        return name.decode() if isinstance(name, bytes) else str(name)

    def _dispatch(self, response: Any) -> Awaitable[None] | None:
        """Handle one response; an awaitable returned by the message hook (a catch-up)
        is awaited before the next response, which keeps per-channel order."""
        kind = self._kind(response)
        if kind in (b"message", b"smessage"):
            name = self._name(response)
            if name in self.names:
                return self._hooks.message(name, response[2])
        elif kind == b"pong" or response == b"PONG":
            if self._ping_sent is not None:
                self.rtt = time.monotonic() - self._ping_sent
                self._ping_sent = None
        elif kind == b"sunsubscribe" and self._name(response) in self.names:
            # The server dropped a shard channel we still want (its slot moved): start
            # over, so the reconnect hook re-routes it to the slot's new owner.
            self._fail(f"slot of {self._name(response)} moved")
        return None

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)


_CONFIRMS = (b"subscribe", b"ssubscribe")
