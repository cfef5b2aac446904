"""The node side of the journal: events recorded by actors, told in batches.

``JournalFeed.record`` builds one event dict and appends it to a list; the first event
of a loop iteration schedules one ``call_soon`` that tells the whole list to the
journal actor. Recording therefore costs a dict and a list append, never an actor
message per event, and nothing at all on the per-delivery path: the shard records a
subscription's *first* publication once (``ShardState.take_first``), never each one.

Error handling: when more than ``max_pending`` events wait for one flush (a storm of
connects inside one iteration), the newest are dropped and counted in ``dropped``; a
batch told while the journal actor is restarting is a dead letter (counted by the
runtime) — journeys are diagnostics, they never hold a connection back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]

MAX_PENDING = 10_000


@dataclass(slots=True)
class JourneyBatch:
    """Events recorded during one loop iteration, oldest first."""

    events: list[Event]


class JournalFeed:
    """Collects events; ``tell(batch)`` hands a batch to the journal actor."""

    def __init__(self, node_name: str, tell: Callable[[JourneyBatch], None],
                 loop: asyncio.AbstractEventLoop, *, clock: Callable[[], float] = time.time,
                 max_pending: int = MAX_PENDING) -> None:
        self.node_name = node_name
        self._tell, self._loop, self._clock = tell, loop, clock
        self.max_pending = max_pending
        self.pending: list[Event] = []
        self.recorded = 0
        self.dropped = 0

    def record(self, event: str, client: str, user: str, fields: dict[str, Any]) -> None:
        """Record ``event`` of connection ``client`` (of ``user``) with ``fields``."""
        pending = self.pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            return
        pending.append({"t": self._clock(), "event": event, "node": self.node_name,
                        "client": client, "user": user, **fields})
        self.recorded += 1
        if len(pending) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            self._tell(JourneyBatch(batch))
