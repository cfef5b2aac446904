"""Cache policies and the write-behind buffer (pure; the clock is passed in).

Policies, per namespace (``channel...cache_policy``):

- ``write_through``: the publish is acknowledged after the engine stored it; the L1 is
  filled on publish and on a read miss.
- ``write_behind``: the publish is acknowledged once it is in the shard's L1 and this
  buffer; the L1 assigns the offset (top + 1) and the buffer is flushed to the engine
  in order, in batches. **Durability window:** the flush timer starts when the buffer
  becomes non-empty and fires ``cache_flush_delay`` later, so every publication is
  handed to the engine at most ``cache_flush_delay`` after its acknowledgement (plus
  the time the earlier ones of the batch take to write), while the engine is up. A
  crash of the cache holder (its shard restarting, or the process dying) loses exactly
  the publications still in the buffer: those acknowledged after the last flush took
  its batch — none older than ``cache_flush_delay``. Other nodes see write-behind
  publications only when they are flushed. **Single writer:** write-behind is only
  safe when this process is the only one publishing to the channel; with possible
  other writers (``engine.type: redis``, ``--workers N``) an explicit write_behind is
  refused at start and the adaptive policy never picks it, unless
  ``cache.single_writer: true`` declares it (broker.config.checks). Should another
  writer appear anyway, the engine assigns a different offset than the L1 did: the
  channel's L1 is dropped and its subscribers resync. **Memory:** unflushed
  publications are pinned in L1 (never shed or evicted), so a shard's L1 can exceed
  ``cache.memory_budget`` by at most its ``max_pending`` unflushed publications,
  until they are flushed (broker.cache.store).
- ``read_through``: publishes go to the engine first (like write-through) but only
  update channels already cached; a read miss loads the channel.
- ``off``: no L1; every read goes to the engine.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from broker.types import Publication

__all__ = ["POLICIES", "Pending", "WriteBehindBuffer"]

POLICIES = ("write_through", "write_behind", "read_through", "off")


@dataclass(frozen=True, slots=True)
class Pending:
    """A publication held in the write-behind buffer until the engine has it."""

    channel: str
    pub: Publication
    history_size: int
    history_ttl: float
    acked_at: float  # monotonic seconds


class WriteBehindBuffer:
    """Acknowledged publications not yet in the engine, oldest first, bounded.

    ``add`` returns True when the caller must arm the flush timer (the buffer was
    empty). Error handling: ``add`` raises OverflowError when ``max_pending`` are
    waiting (the engine is not keeping up or is down): the publish is refused, never
    silently dropped.
    """

    def __init__(self, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.max_pending = max_pending
        self._queue: deque[Pending] = deque()
        self.flushed = 0
        self.max_lag = 0.0  # the longest ack-to-engine delay seen (seconds)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, pending: Pending) -> bool:
        if len(self._queue) >= self.max_pending:
            raise OverflowError(f"write-behind buffer full ({self.max_pending} pending)")
        self._queue.append(pending)
        return len(self._queue) == 1

    def take(self) -> list[Pending]:
        """The whole buffer as one batch, oldest first; the buffer is empty after."""
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def put_back(self, batch: list[Pending]) -> None:
        """Return an unwritten batch tail to the front (order kept) after a failure."""
        self._queue.extendleft(reversed(batch))

    def written(self, pending: Pending, now: float) -> None:
        self.flushed += 1
        self.max_lag = max(self.max_lag, now - pending.acked_at)

    def channels(self) -> set[str]:
        return {p.channel for p in self._queue}
