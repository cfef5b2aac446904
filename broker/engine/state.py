"""Pure engine state: history streams (presence and idempotency: ``presence_state``).

The clock is an argument (``now``: monotonic seconds), never read here, so tests drive
time by hand. Expiry is checked on every access *and* swept in bulk by ``sweep(now)``:
how often the sweep runs decides when memory is freed, never what a read returns.

Semantics follow centrifuge's memory broker. A stream has an epoch (random, made with
the stream) and a top offset; offsets are dense, +1 per publication. ``history_ttl`` is
the stream's lifetime since its last publication: then the publications are dropped but
epoch and top are kept, so a client at the top still recovers (with nothing) and a
client behind learns it missed messages; removing history does the same. The *meta*
(epoch + top) lives ``meta_ttl`` after the last publish or read; then the stream is
forgotten and the next access starts a new epoch at offset 0.
"""

from __future__ import annotations

import heapq
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice

from broker.engine.base import UnrecoverablePosition
from broker.engine.presence_state import IdempotencyCache, PresenceStats, PresenceTable
from broker.types import ClientInfo, Publication, StreamPosition

__all__ = [
    "HistoryHub",
    "HistoryStats",
    "HistoryStream",
    "IdempotencyCache",
    "PresenceStats",
    "PresenceTable",
    "new_epoch",
    "publication_size",
]


def new_epoch() -> str:
    """A short random epoch; random (not a timestamp) so two streams never share one."""
    return secrets.token_hex(4)


def publication_size(pub: Publication) -> int:
    """Approximate bytes a publication holds (payloads and strings, not object headers)."""
    size = len(pub.data)
    info = pub.info
    if info is not None:
        size += len(info.user) + len(info.client)
        size += len(info.conn_info or b"") + len(info.chan_info or b"")
    if pub.tags:
        size += sum(len(k) + len(v) for k, v in pub.tags.items())
    return size


class HistoryStream:
    """One channel's stream: epoch, top offset and a bounded window of publications.

    The window is a deque of Publications (each carries its own offset); offsets in it
    are dense, so the publication with offset ``o`` sits at index ``o - first``.
    A per-item expiry is not kept because ``history_ttl`` applies to the whole stream.
    """

    __slots__ = ("bytes", "epoch", "meta_expires_at", "pubs", "pubs_expire_at", "top")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.pubs: deque[Publication] = deque()
        self.bytes = 0
        self.pubs_expire_at = float("inf")
        self.meta_expires_at = float("inf")

    def clear(self) -> int:
        """Drop every publication, keep epoch and top; returns the bytes released."""
        released = self.bytes
        self.pubs.clear()
        self.bytes = 0
        self.pubs_expire_at = float("inf")
        return released

    def expire_if_due(self, now: float) -> bool:
        """Clear the publications if the history TTL has passed; True if it had."""
        if now < self.pubs_expire_at:
            return False
        self.clear()
        return True

    def append(
        self,
        data: bytes,
        info: ClientInfo | None,
        tags: Mapping[str, str] | None,
        *,
        size: int,
        ttl: float,
        now: float,
        time_ms: int,
        delta: bool = False,
    ) -> tuple[Publication, StreamPosition]:
        """Store a publication at ``top + 1``, trim to ``size``, restart the TTL.

        Error handling: raises ValueError if ``size`` < 1 (a channel without history
        must not reach the stream at all).
        """
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self.expire_if_due(now)
        self.top += 1
        pub = Publication(data, self.top, info, dict(tags) if tags else None, time_ms, delta)
        pubs = self.pubs
        if pubs.maxlen != size:
            # History size is a per-publish option; a changed size rebuilds the window once.
            self.pubs = pubs = deque(pubs, maxlen=size)
            self.bytes = sum(publication_size(p) for p in pubs)
        if len(pubs) == size:
            self.bytes -= publication_size(pubs[0])
        pubs.append(pub)
        self.bytes += publication_size(pub)
        self.pubs_expire_at = now + ttl
        return pub, StreamPosition(self.top, self.epoch)

    def since(
        self, position: StreamPosition | None, limit: int, reverse: bool, now: float
    ) -> tuple[list[Publication], StreamPosition]:
        """Read the window; returns (publications, stream top position).

        ``limit``: 0 = none (position only), negative = all, n = at most n.
        Without ``position``: oldest first (newest first if ``reverse``).
        With ``position`` forward: offsets > position.offset, oldest first.
        With ``position`` reverse: offsets < position.offset, newest first.

        Error handling: raises UnrecoverablePosition if ``position.epoch`` is set and
        differs from the stream's (an empty one matches any epoch, as in Centrifugo),
        or (forward only) if position.offset is beyond the top or the publications
        right after it fell out of the window (trimmed or expired).
        """
        self.expire_if_due(now)
        top = StreamPosition(self.top, self.epoch)
        pubs = self.pubs
        first = self.top - len(pubs) + 1  # offset of pubs[0]; top + 1 when empty
        if position is None:
            start, stop = 0, len(pubs)
        else:
            if position.epoch and position.epoch != self.epoch:  # "" matches any epoch
                raise UnrecoverablePosition(
                    f"epoch {position.epoch!r} is not the stream's {self.epoch!r}"
                )
            if reverse:
                start, stop = 0, max(0, min(len(pubs), position.offset - first))
            else:
                if position.offset > self.top:
                    raise UnrecoverablePosition(f"offset {position.offset} beyond top {self.top}")
                if position.offset + 1 < first:
                    raise UnrecoverablePosition(
                        f"offsets {position.offset + 1}..{first - 1} are no longer in history"
                    )
                start, stop = position.offset + 1 - first, len(pubs)
        if limit == 0 or start >= stop:
            return [], top
        count = stop - start if limit < 0 else min(limit, stop - start)
        if reverse:  # islice walks the deque once; indexing it would be O(n) per item
            skip = len(pubs) - stop
            return list(islice(reversed(pubs), skip, skip + count)), top
        return list(islice(pubs, start, start + count)), top


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of a HistoryHub, for metrics."""

    streams: int
    publications: int
    bytes: int
    expired: int  # streams whose publications were dropped by history TTL
    forgotten: int  # streams whose meta expired (next access starts a new epoch)


class HistoryHub:
    """Streams keyed by channel, with TTL/meta-TTL expiry and memory accounting.

    Expiry uses one heap of (deadline, channel) with lazy deletion: a channel has at
    most one live entry (``_queued`` holds its deadline); an entry whose deadline no
    longer matches is stale and skipped.
    """

    def __init__(self) -> None:
        self._streams: dict[str, HistoryStream] = {}
        self._heap: list[tuple[float, str]] = []
        self._queued: dict[str, float] = {}
        self.bytes = 0
        self._expired = 0
        self._forgotten = 0

    def _stream(self, channel: str, now: float, meta_ttl: float) -> HistoryStream:
        """The live stream for ``channel``, forgetting an expired meta first."""
        stream = self._streams.get(channel)
        if stream is not None and now >= stream.meta_expires_at:
            self._forget(channel, stream)
            stream = None
        if stream is None:
            stream = self._streams[channel] = HistoryStream()
            stream.meta_expires_at = now + meta_ttl
        else:
            self._expire(stream, now)
        return stream

    def _expire(self, stream: HistoryStream, now: float) -> bool:
        held = stream.bytes
        if not stream.expire_if_due(now):
            return False
        self.bytes -= held
        self._expired += 1
        return True

    def _forget(self, channel: str, stream: HistoryStream) -> None:
        self.bytes -= stream.bytes
        del self._streams[channel]
        self._forgotten += 1

    def _schedule(self, channel: str, stream: HistoryStream) -> None:
        deadline = min(stream.pubs_expire_at, stream.meta_expires_at)
        queued = self._queued.get(channel)
        # A later deadline needs no new entry: the sweep re-queues when it pops early.
        if queued is None or deadline < queued:
            self._queued[channel] = deadline
            heapq.heappush(self._heap, (deadline, channel))

    def append(
        self,
        channel: str,
        data: bytes,
        info: ClientInfo | None,
        tags: Mapping[str, str] | None,
        *,
        size: int,
        ttl: float,
        meta_ttl: float,
        now: float,
        time_ms: int,
        delta: bool = False,
    ) -> tuple[Publication, StreamPosition]:
        """Append to the channel's stream (creating it); see HistoryStream.append.

        The meta then lives at least ``max(meta_ttl, ttl)`` more: never shorter than
        the publications it describes.
        """
        stream = self._stream(channel, now, meta_ttl)
        before = stream.bytes
        result = stream.append(data, info, tags, size=size, ttl=ttl, now=now, time_ms=time_ms,
                               delta=delta)
        self.bytes += stream.bytes - before
        stream.meta_expires_at = max(stream.meta_expires_at, now + max(meta_ttl, ttl))
        self._schedule(channel, stream)
        return result

    def history(
        self,
        channel: str,
        since: StreamPosition | None,
        limit: int,
        reverse: bool,
        *,
        meta_ttl: float,
        now: float,
    ) -> tuple[list[Publication], StreamPosition]:
        """Read a stream (creating an empty one so its epoch is stable); touches the meta.

        Error handling: raises UnrecoverablePosition as HistoryStream.since does.
        """
        stream = self._stream(channel, now, meta_ttl)
        stream.meta_expires_at = max(stream.meta_expires_at, now + meta_ttl)
        self._schedule(channel, stream)
        return stream.since(since, limit, reverse, now)

    def remove(self, channel: str) -> None:
        """Drop the channel's publications, keeping its epoch and top offset."""
        stream = self._streams.get(channel)
        if stream is not None:
            self.bytes -= stream.clear()

    def sweep(self, now: float) -> int:
        """Apply every expiry due by ``now``; returns how many streams changed."""
        changed = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, channel = heapq.heappop(heap)
            if self._queued.get(channel) != deadline:
                continue  # stale entry, a newer one is queued
            del self._queued[channel]
            stream = self._streams.get(channel)
            if stream is not None and now >= stream.meta_expires_at:
                self._forget(channel, stream)
                changed += 1
            elif stream is not None:
                changed += self._expire(stream, now)
                self._schedule(channel, stream)
        return changed

    def statistics(self) -> HistoryStats:
        pubs = sum(len(s.pubs) for s in self._streams.values())
        return HistoryStats(len(self._streams), pubs, self.bytes, self._expired, self._forgotten)
