"""The journal actor: folds journey events into the aggregates and writes them to the store.

It gets ``JourneyBatch`` messages from the node's ``JournalFeed`` (one per loop
iteration at most). Each batch updates ``JourneyState`` at once (so the console and the
alert sample see it), then goes to the store: appended synchronously to the memory
ring, or written to Redis as an effect, one pipelined batch in flight at a time, later
batches queued behind it (at most ``MAX_QUEUED`` events; beyond, the oldest queued are
dropped and counted).

Reconnects across nodes: a connect of a user this node has no recent disconnect for is
looked up in the shared store (one effect per batch); a disconnect another node wrote
within ``journeys.reconnect_window`` makes it a reconnect. A disconnect from this node
was already seen locally, so it is never counted twice.

Failure policy: a permanent child of the ``monitors`` supervisor (one_for_one). The
``JourneyBoard`` (aggregates, store, counters) belongs to the node and outlives a
restart; what a restart loses is the queue of events not yet written to Redis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors import Actor
from broker.journal.aggregates import JourneyState
from broker.journal.feed import JourneyBatch
from broker.journal.store import JourneyStore, MemoryJourneyStore

if TYPE_CHECKING:
    from broker.config import JourneysConfig
    from broker.node import Node

log = logging.getLogger("chorus.journal")

Event = dict[str, Any]
MAX_QUEUED = 50_000


@dataclass(slots=True)
class JourneyBoard:
    """What the node keeps of journeys across journal actor restarts."""

    store: JourneyStore
    state: JourneyState
    written: int = 0
    dropped: int = 0
    failed_batches: int = 0
    last_error: str = ""
    lookups: int = 0
    started_at: float = field(default_factory=time.time)

    @classmethod
    def from_config(cls, config: JourneysConfig, store: JourneyStore) -> JourneyBoard:
        return cls(store, JourneyState(reconnect_window=config.reconnect_window,
                                       storm_window=config.storm_window,
                                       storm_threshold=config.storm_threshold))

    def counters(self) -> dict[str, Any]:
        return {"written": self.written, "dropped": self.dropped,
                "failed_batches": self.failed_batches, "last_error": self.last_error,
                "lookups": self.lookups,
                "store": "redis" if self.store.remote else "memory"}


@dataclass(slots=True)
class _Looked:
    """The shared store's answer: each user's last disconnect, for these connects."""

    connects: list[Event]
    found: dict[str, Event]


class JournalActor(Actor):
    """Aggregates and stores journey events (see the module docstring)."""

    kind = "journal"

    def __init__(self, node: Node) -> None:
        board = node.journeys
        assert board is not None, "the journal actor runs only with journeys enabled"
        self.node = node
        self.board = board
        self.queue: list[Event] = []
        self.writing = False

    def receive(self, message: Any) -> Any:
        if type(message) is JourneyBatch:
            self._observe(message.events)
        elif isinstance(message, _Looked):
            self._reconnects(message.connects, message.found)
        elif message == "summary":
            return self.board.state.summary(time.time())
        else:
            return super().receive(message)
        return None

    def _observe(self, events: list[Event]) -> None:
        state, store = self.board.state, self.board.store
        out: list[Event] = []
        unknown: list[Event] = []
        for event in events:
            if store.remote and event.get("event") == "connect" and event.get("user") \
                    and not state.knows_user(str(event["user"])):
                unknown.append(event)
            derived = state.observe(event)
            out.append(event)
            if derived is not None:
                state.events += 1
                out.append(derived)
        self._store(out)
        if unknown:
            self.board.lookups += 1
            users = {str(e["user"]) for e in unknown}
            self.run_effect(store.last_disconnects(users),
                            on_result=lambda found: self.receive(_Looked(unknown, found)),
                            on_error=self._failed)

    def _reconnects(self, connects: list[Event], found: dict[str, Event]) -> None:
        state, here = self.board.state, self.node.name
        derived = []
        for connect in connects:
            previous = found.get(str(connect["user"]))
            if previous is None or previous.get("node") == here:
                continue  # none, or seen here already
            reconnect = state.reconnect(connect, previous)
            if reconnect is not None:
                state.events += 1
                derived.append(reconnect)
        if derived:
            self._store(derived)

    def _store(self, events: list[Event]) -> None:
        store = self.board.store
        if isinstance(store, MemoryJourneyStore):
            store.append_now(events)
            self.board.written += len(events)
            return
        queue = self.queue
        queue.extend(events)
        if len(queue) > MAX_QUEUED:
            excess = len(queue) - MAX_QUEUED
            del queue[:excess]
            self.board.dropped += excess
        if not self.writing:
            self._write()

    def _write(self) -> None:
        batch, self.queue = self.queue, []
        if not batch:
            self.writing = False
            return
        self.writing = True

        def written(_: object) -> None:
            self.board.written += len(batch)
            self._write()

        def failed(error: BaseException) -> None:
            self.board.dropped += len(batch)
            self._failed(error)
            self._write()

        self.run_effect(self.board.store.append(batch), on_result=written, on_error=failed)

    def _failed(self, error: BaseException) -> None:
        board = self.board
        board.failed_batches += 1
        if board.last_error != repr(error):
            log.warning("journeys: store failed: %r", error)
        board.last_error = repr(error)
