"""ShardL1: the cache state one shard incarnation owns.

A ``ShardActor`` makes a fresh ``ShardL1`` when it starts and hands it to the node's
``CacheLayer`` (``attach``); when the shard ends, by a stop, a failure or a kill, it takes
it back (``detach``). So a restarted shard starts with an empty L1 and an empty
write-behind buffer *by construction*: nothing outside the shard has to remember to
clear them, and nothing of the old incarnation can be written to after it is gone.

What it holds:

- ``cache``: the L1 history window of this shard's channels (``ChannelCache``).
- ``buffer``: write-behind publications acknowledged but not yet in the engine.
- ``following``: the channels this shard follows on the engine (a confirmed engine
  subscription, because it has local subscribers), each with the engine's link
  generation at the time. Only for those can L1 know about other nodes' publications,
  so only those may be answered from L1 when the engine is shared by several nodes
  (see ``CacheLayer.authoritative``).
- ``inflight``: the write-behind batch being written to the engine right now.
- ``arm_flush``: how to schedule this shard's next write-behind flush (the shard's own
  timer, so the flush dies with the shard).

Pure state: no I/O, no loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from broker.cache.policy import Pending, WriteBehindBuffer
from broker.cache.store import ChannelCache

__all__ = ["ShardL1"]


def _no_flush(delay: float) -> None:
    """A ShardL1 used without an actor (unit tests): flushes are driven by hand."""


@dataclass(slots=True, eq=False)
class ShardL1:
    """A shard incarnation's cache state: its L1, write-behind buffer and followed channels."""

    index: int
    cache: ChannelCache
    buffer: WriteBehindBuffer
    arm_flush: Callable[[float], None] = _no_flush
    following: dict[str, int] = field(default_factory=dict)
    flush_armed: bool = False  # a flush timer or a flush is under way
    inflight: list[Pending] = field(default_factory=list)  # the batch being written

    def follow(self, channel: str, generation: int) -> None:
        """The engine subscription of ``channel`` is confirmed. What L1 held of it was
        filled while nobody told it about other nodes' publications: drop it."""
        self.following[channel] = generation
        self.cache.invalidate(channel)

    def unfollow(self, channel: str) -> None:
        """The last local subscriber left: L1 no longer hears of the channel."""
        self.following.pop(channel, None)

    def current(self, channel: str, generation: int) -> bool:
        """Whether ``channel`` is followed and its L1 entry can be trusted at link
        ``generation``. A changed generation means the link to the engine was re-made
        since: what L1 holds may miss what was published meanwhile, so it is dropped
        (the next read loads the engine's window) and the channel counts as current
        from this generation on."""
        seen = self.following.get(channel)
        if seen is None:
            return False
        if seen != generation:
            self.cache.invalidate(channel)
            self.following[channel] = generation
        return True
