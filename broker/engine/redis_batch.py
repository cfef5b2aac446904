"""Auto-pipelining: commands issued during one loop iteration go to Redis as one pipeline.

Under a burst many publishes are in flight at once. Sent one by one, each waits its own
round trip and its publication reaches the shards alone, in its own loop iteration, so
subscribers' outboxes cannot coalesce. Batched, the replies come back together, the
publications fan out in the same iteration, and each connection gets one write for all
of them. Commands on one client keep their order (one pipeline, one connection), so
offsets assigned by the publish script still follow submission order.

Error handling: a failure of the whole pipeline (socket, timeout) fails every command
in it; an error reply fails only its own command. Callers see the exception as if they
had sent the command alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Queue = Callable[[Any], Any]  # adds one command to a pipeline


class Batcher:
    """Groups commands per client until the end of the current loop iteration."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Any, list[tuple[Queue, asyncio.Future[Any]]]]] = {}
        self._scheduled = False
        self.pipelines = 0
        self.commands = 0

    async def submit(self, client: Any, queue: Queue) -> Any:
        """Queue a command for ``client``'s next pipeline and await its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entry = self._pending.get(id(client))
        if entry is None:
            entry = self._pending[id(client)] = (client, [])
        entry[1].append((queue, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        for client, items in pending.values():
            loop.create_task(self._execute(client, items))

    async def _execute(self, client: Any, items: list[tuple[Queue, asyncio.Future[Any]]]
                       ) -> None:
        self.pipelines += 1
        self.commands += len(items)
        try:
            pipe = client.pipeline(transaction=False)
            for queue, _ in items:
                queue(pipe)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as error:  # the whole pipeline failed: so did every command
            for _, future in items:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(items, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
