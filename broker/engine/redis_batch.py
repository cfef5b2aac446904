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


class ReplicasMissing(Exception):
    """The command ran, but ``WAIT`` after its pipeline counted fewer replicas than it
    asked for; ``result`` is the command's own reply."""

    def __init__(self, result: Any, confirmed: int, required: int) -> None:
        super().__init__(f"{confirmed} of {required} replicas confirmed")
        self.result, self.confirmed, self.required = result, confirmed, required


Wait = tuple[int, int]  # (replicas, timeout ms) for a WAIT after the pipeline
Item = tuple[Queue, "asyncio.Future[Any]", Wait | None]


class Batcher:
    """Groups commands per client until the end of the current loop iteration."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Any, list[Item]]] = {}
        self._scheduled = False
        self.pipelines = 0
        self.commands = 0

    async def submit(self, client: Any, queue: Queue, *, wait: Wait | None = None) -> Any:
        """Queue a command for ``client``'s next pipeline and await its reply.

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

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        for client, items in pending.values():
            loop.create_task(self._execute(client, items))

    async def _execute(self, client: Any, items: list[Item]) -> None:
        self.pipelines += 1
        self.commands += len(items)
        waits = [wait for _, _, wait in items if wait is not None]
        try:
            pipe = client.pipeline(transaction=False)
            for queue, _, _ in items:
                queue(pipe)
            if waits:
                pipe.execute_command("WAIT", max(w[0] for w in waits), max(w[1] for w in waits))
            results = await pipe.execute(raise_on_error=False)
        except BaseException as error:  # the whole pipeline failed: so did every command
            for _, future, _ in items:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        confirmed = results.pop() if waits else 0
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
