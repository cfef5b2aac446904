"""Auto-pipelining: commands issued during one loop iteration go to Redis as one pipeline.

Under a burst many publishes are in flight at once. Sent one by one, each waits its own
round trip and its publication reaches the shards alone, in its own loop iteration, so
subscribers' outboxes cannot coalesce. Batched, the replies come back together, the
publications fan out in the same iteration, and each connection gets one write for all
of them. Commands on one client keep their order (one pipeline, one connection), so
offsets assigned by the publish script still follow submission order.

*Ordered* commands (publishes) of one client go in one lane: while a pipeline of the
lane is out, the lane's next commands gather and leave as the next pipeline when it is
back. Pipelines sent concurrently ride different pooled connections and may come back
in any order; in the lane, replies — hence a node's local fan-outs of its own
publications — follow the order Redis ran them in (a channel's offsets), and a whole
acknowledged pipeline fans out in one loop iteration, so subscribers' outboxes coalesce
it as with the memory engine. A busy lane makes the pipelines bigger, not more numerous.

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
        self._pending: dict[tuple[int, bool], tuple[Any, list[Item]]] = {}
        self._held: dict[int, tuple[Any, list[Item]]] = {}  # ordered lanes: waiting
        self._out: set[int] = set()  # ordered lanes with a pipeline out
        self._scheduled = False
        self.pipelines = 0
        self.commands = 0

    async def submit(self, client: Any, queue: Queue, *, wait: Wait | None = None,
                     ordered: bool = False) -> Any:
        """Queue a command for ``client``'s next pipeline and await its reply.

        ``wait`` (replicas, timeout in ms): the pipeline ends with one ``WAIT`` covering
        every write in it (they share the connection), and this command's reply comes
        back only if at least that many replicas confirmed; else ReplicasMissing.
        ``ordered``: the command goes in the client's ordered lane (see the module)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        key = (id(client), ordered)
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = (client, [])
        entry[1].append((queue, future, wait))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        for (lane, ordered), (client, items) in pending.items():
            if not ordered:
                loop.create_task(self._execute(client, items))
            elif lane in self._out:  # the lane's pipeline is out: this one goes next
                self._held.setdefault(lane, (client, []))[1].extend(items)
            else:
                self._out.add(lane)
                loop.create_task(self._run_lane(lane, client, items))

    async def _run_lane(self, lane: int, client: Any, items: list[Item]) -> None:
        """Pipelines of one ordered lane, one at a time, until nothing is held."""
        try:
            while True:
                await self._execute(client, items)
                held = self._held.pop(lane, None)
                if held is None:
                    return
                client, items = held
        finally:
            self._out.discard(lane)
            held = self._held.pop(lane, None)
            if held is not None:  # cancelled with commands held: they must not hang
                for _, future, _ in held[1]:
                    if not future.done():
                        future.set_exception(ConnectionError("redis pipeline lane ended"))

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
