"""Auto-pipelining: commands issued during one loop iteration go to Redis together.

Under a burst many publishes are in flight at once. Sent one by one, each waits its own
round trip and its publication reaches the shards alone, in its own loop iteration, so
subscribers' outboxes cannot coalesce. Batched, the replies come back together, the
publications fan out in the same iteration, and each connection gets one write for all
of them.

Two kinds of commands:

- *Unordered* commands (history reads, presence, occupancy, deletes) of one client
  leave as one redis-py pipeline per loop iteration, on a pooled connection; pipelines
  of successive iterations may be out at once and come back in any order.
- *Ordered* commands (publishes) of one client go in its lane (broker.engine.redis_lane):
  one dedicated connection, each iteration's commands written as one batch without
  waiting for the previous batch's replies, replies taken in order. Redis runs them in
  submission order, so offsets follow it, and the node's local fan-outs of its own
  publications follow the offsets; a whole acknowledged batch fans out in one loop
  iteration.

Error handling: a failure of a whole pipeline or lane connection (socket, timeout) fails
every command in it; an error reply fails only its own command. Callers see the exception
as if they had sent the command alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from broker.engine.redis_lane import Item, Lane, ReplicasMissing, Wait, resolve, wait_command

__all__ = ["Batcher", "ReplicasMissing", "Wait"]

Queue = Callable[[Any], Any]  # adds one command to a pipeline


class Batcher:
    """Groups unordered commands per client until the end of the current loop iteration,
    and keeps one ordered lane per client. ``preamble``: commands every lane connection
    sends first (the engine's ``SCRIPT LOAD``s)."""

    def __init__(self, preamble: list[tuple[Any, ...]] | None = None) -> None:
        self._pending: dict[int, tuple[Any, list[tuple[Queue, asyncio.Future[Any],
                                                         Wait | None]]]] = {}
        self._lanes: dict[int, Lane] = {}
        self._preamble = list(preamble or [])
        self._scheduled = False
        self._pipelines = 0
        self._commands = 0

    @property
    def pipelines(self) -> int:
        """Pipelines and lane batches sent (with ``commands``: how well they batch)."""
        return self._pipelines + sum(lane.batches for lane in self._lanes.values())

    @property
    def commands(self) -> int:
        return self._commands + sum(lane.commands for lane in self._lanes.values())

    async def submit(self, client: Any, queue: Queue, *, wait: Wait | None = None) -> Any:
        """Queue an unordered command for ``client``'s next pipeline; await its reply.

        ``wait`` (replicas, timeout in ms): the pipeline ends with one ``WAIT`` covering
        every write in it (they share the connection), and this command's reply comes
        back only if at least that many replicas confirmed; else ReplicasMissing."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entry = self._pending.get(id(client))
        if entry is None:
            entry = self._pending[id(client)] = (client, [])
        entry[1].append((queue, future, wait))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def lane(self, client: Any) -> Lane:
        """``client``'s ordered lane (see broker.engine.redis_lane): ``lane.submit(args,
        wait)`` sends a command in it and returns the future of its reply."""
        lane = self._lanes.get(id(client))
        if lane is None:
            lane = self._lanes[id(client)] = Lane(client, self._preamble)
        return lane

    async def close(self) -> None:
        """Close the lanes (what is outstanding in them fails)."""
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            await lane.close()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        for client, items in pending.values():
            loop.create_task(self._execute(client, items))

    async def _execute(self, client: Any,
                       items: list[tuple[Queue, asyncio.Future[Any], Wait | None]]) -> None:
        self._pipelines += 1
        self._commands += len(items)
        lane_items: list[Item] = [(b"", future, w) for _, future, w in items]
        wait = wait_command(lane_items)
        try:
            pipe = client.pipeline(transaction=False)
            for queue, _, _ in items:
                queue(pipe)
            if wait is not None:
                pipe.execute_command(*wait)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as error:  # the whole pipeline failed: so did every command
            for _, future, _ in items:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        confirmed = results.pop() if wait is not None else None
        resolve(lane_items, results, confirmed)
