"""One shard's L1: the recent history of its hot channels, under a memory budget.

An entry mirrors the engine's stream of one channel: its epoch, its top offset and the
publications the engine holds (the last ``history_size``, contiguous up to the top;
none once ``history_ttl`` passed since the last publish, as in the engine), or only the
newest ``size`` of them when the adaptive policy shrank the channel's L1 share (the
entry is then *trimmed*: reads that need older publications miss). Reads are
answered from the entry only when the answer is certainly the engine's; anything
doubtful (another epoch, a position beyond the top or before the window) is a miss and
goes to the engine, which raises what it raises. Pure: time is passed in.

**The budget bounds every channel.** ``bytes`` counts each cached publication
(payloads + ``OVERHEAD``) and each cached channel (``ENTRY_OVERHEAD``). When filling a
channel (``load``, ``append``) takes the shard over ``budget``, other channels leave
first, by the eviction policy; if that is not enough, the channel being filled sheds
its own oldest publications (it becomes *trimmed*: its top and epoch stay exact, reads
that need what it shed miss and go to the engine). A publication larger than the whole
budget is therefore not cached: the channel keeps only its position; and an unpinned
channel whose position alone does not fit leaves L1 (so while a shard is over budget by
unflushed publications, see below, a channel not yet cached cannot be loaded: a
write-behind publish to it is refused until they are flushed).

Error handling / the one excess: write-behind publications not yet in the engine
(``pin``) are never shed nor evicted — L1 is the only place a read can find them — so
a shard can be over budget by its unflushed publications: at most
``cache.max_pending`` of them (the write-behind buffer's bound, past which publishes
are refused), and only until they are flushed (``pin(channel, -1)`` sheds at once).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from broker.cache.lru import Candidate, choose_victims, expired_idle
from broker.types import Publication, StreamPosition

__all__ = ["ENTRY_OVERHEAD", "OVERHEAD", "CacheStats", "ChannelCache", "Entry"]

OVERHEAD = 96  # rough bytes per cached publication beyond its payloads
ENTRY_OVERHEAD = 256  # rough bytes per cached channel (entry, deque, key), so that
# channels holding no publication are bounded by the budget too


def pub_bytes(pub: Publication) -> int:
    info = pub.info
    extra = len(info.conn_info or b"") + len(info.chan_info or b"") if info else 0
    return OVERHEAD + len(pub.data) + extra


@dataclass(slots=True)
class Entry:
    """One channel's L1 window: its stream position, size and expiry."""

    epoch: str
    top: int
    size: int  # history_size
    ttl: float  # history_ttl
    expires: float  # publications vanish then (last publish + history_ttl)
    last_access: float
    pubs: deque[Publication] = field(default_factory=deque)
    bytes: int = 0  # of ``pubs`` (the shard's total adds ENTRY_OVERHEAD per entry)
    uses: int = 0
    pinned: int = 0  # write-behind publications not yet in the engine: the newest ones
    full: int = 0  # the engine's history_size (``size`` is what L1 keeps, <= full)
    trimmed: bool = False  # L1 dropped publications the engine may still hold


@dataclass(slots=True)
class CacheStats:
    """Counters of an L1 store (hits, misses, evictions, bytes, entries)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


class ChannelCache:
    """L1 of one shard. ``budget`` bytes; ``eviction`` lru|lfu|ttl; ``idle_ttl`` seconds."""

    def __init__(self, budget: int, eviction: str = "lru", idle_ttl: float = 60.0) -> None:
        self.budget, self.eviction, self.idle_ttl = budget, eviction, idle_ttl
        self.entries: dict[str, Entry] = {}
        self.stats = CacheStats()

    # -- filling ----------------------------------------------------------------------
    def load(self, channel: str, pubs: list[Publication], top: StreamPosition, *,
             size: int, ttl: float, now: float, full: int = 0) -> None:
        """Cache the engine's whole window (a read with limit -1) for ``channel``,
        keeping its newest ``size`` publications (``full``: the engine's history size,
        default ``size``)."""
        self._drop(channel)
        entry = Entry(top.epoch, top.offset, size, ttl, now + ttl, now, full=full or size)
        entry.trimmed = len(pubs) > size and size < entry.full
        for pub in pubs[-size:]:
            entry.pubs.append(pub)
            entry.bytes += pub_bytes(pub)
        self.entries[channel] = entry
        self.stats.bytes += entry.bytes + ENTRY_OVERHEAD
        self._fit(channel, now)

    def refresh(self, channel: str, pubs: list[Publication], top: StreamPosition, *,
                size: int, ttl: float, now: float, full: int = 0) -> bool:
        """Refresh-ahead: replace ``channel``'s entry with the engine's window (a read
        with limit -1 just answered) keeping its use count, and restart its idle clock.

        False if the entry left meanwhile (evicted, invalidated, shard restarted): it is
        not re-created. An entry that moved past the answer while the engine replied (a
        newer publication appended, or write-behind publications pinned) is kept as it
        is, only its idle clock restarts: it is at least as fresh as the answer."""
        entry = self.entries.get(channel)
        if entry is None:
            return False
        if entry.pinned or (entry.epoch == top.epoch and entry.top > top.offset):
            entry.last_access = now
            return True
        uses = entry.uses
        self.load(channel, pubs, top, size=size, ttl=ttl, now=now, full=full)
        self.entries[channel].uses = uses  # load keeps ``channel`` (keep=channel)
        return True

    def append(self, channel: str, pub: Publication, epoch: str, *, now: float,
               create: bool = False, size: int = 0, ttl: float = 0.0, full: int = 0) -> bool:
        """Add a publication the engine accepted at ``pub.offset``; False if not cached.

        Only a publication right after the top extends the entry; an older one is already
        there; a gap (or another epoch) means the entry no longer mirrors the engine, so
        it is dropped. ``create`` starts an entry from nothing only for offset 1 (a
        stream's first publication: the whole window is known).
        """
        entry = self.entries.get(channel)
        if entry is None:
            if create and pub.offset == 1:
                self.load(channel, [pub], StreamPosition(1, epoch), size=size, ttl=ttl,
                          now=now, full=full)
                return channel in self.entries
            return False
        if entry.epoch != epoch or pub.offset > entry.top + 1:
            self._drop(channel)
            return False
        if pub.offset <= entry.top:
            return True
        if now >= entry.expires:
            self._clear_pubs(entry)  # the engine's history expired too: nothing is missing
            entry.trimmed = False
        entry.top, entry.expires = pub.offset, now + entry.ttl
        entry.pubs.append(pub)
        entry.bytes += pub_bytes(pub)
        self.stats.bytes += pub_bytes(pub)
        self._trim(entry)
        entry.uses += 1
        entry.last_access = now
        self._fit(channel, now)
        return channel in self.entries  # not if even its bare position did not fit

    # -- reading ----------------------------------------------------------------------
    def read(self, channel: str, since: StreamPosition | None, limit: int, reverse: bool,
             now: float) -> tuple[list[Publication], StreamPosition] | None:
        """The engine's answer to ``history(...)`` from L1, or None (a miss)."""
        entry = self.entries.get(channel)
        if entry is not None and self.eviction == "ttl" and \
                now - entry.last_access >= self.idle_ttl and not entry.pinned:
            self._drop(channel, evicted=True)
            entry = None
        found = None if entry is None else self._answer(entry, since, limit, reverse, now)
        if found is None:
            self.stats.misses += 1
            return None
        assert entry is not None
        self.stats.hits += 1
        entry.uses += 1
        entry.last_access = now
        return found

    @staticmethod
    def _answer(entry: Entry, since: StreamPosition | None, limit: int, reverse: bool,
                now: float) -> tuple[list[Publication], StreamPosition] | None:
        top = StreamPosition(entry.top, entry.epoch)
        live = now < entry.expires  # past it the engine holds no publication either
        pubs = list(entry.pubs) if live else []
        # A trimmed entry lacks the engine's older publications (maybe all of them, when
        # the budget left it only its position): a read that would reach past its
        # oldest one is a miss.
        trimmed = entry.trimmed and live and limit != 0
        if since is not None:
            if (since.epoch and since.epoch != entry.epoch) or since.offset > entry.top:
                return None
            if reverse:
                pubs = [p for p in pubs if p.offset < since.offset]
            else:
                first = pubs[0].offset if pubs else entry.top + 1
                if since.offset + 1 < first:
                    return None  # the engine says "no longer held", or L1 is trimmed
                pubs = [p for p in pubs if p.offset > since.offset]
                trimmed = False
        elif trimmed and not reverse:
            return None
        if trimmed and (limit < 0 or len(pubs) < limit):
            return None
        if reverse:
            pubs.reverse()
        if limit == 0:
            return [], top
        return (pubs if limit < 0 else pubs[:limit]), top

    def resize(self, channel: str, size: int) -> None:
        """Keep at most ``size`` publications of ``channel`` in L1 from now on. Growing
        drops the entry (the next read reloads the whole window)."""
        entry = self.entries.get(channel)
        if entry is None:
            return
        if size > entry.size:
            if not entry.pinned:
                self._drop(channel)
            return
        entry.size = size
        self._trim(entry)

    def _trim(self, entry: Entry) -> None:
        """Keep the newest ``size``; a shrunk L1 share (``size < full``) still keeps the
        unflushed write-behind publications (the engine does not have them yet)."""
        keep = max(entry.size, min(entry.pinned, entry.full))
        while len(entry.pubs) > keep:
            self._pop_oldest(entry)
            entry.trimmed = entry.trimmed or entry.size < entry.full

    def _pop_oldest(self, entry: Entry) -> None:
        gone = pub_bytes(entry.pubs.popleft())
        entry.bytes -= gone
        self.stats.bytes -= gone

    def _shed(self, entry: Entry) -> None:
        """Drop ``entry``'s oldest unpinned publications while the shard is over budget
        (the engine still holds them: the entry is trimmed from then on)."""
        while self.stats.bytes > self.budget and len(entry.pubs) > entry.pinned:
            self._pop_oldest(entry)
            entry.trimmed = True

    def _fit(self, channel: str, now: float) -> None:
        """``channel`` grew: bring the shard under budget. Other channels are evicted
        first (by the policy); then ``channel`` sheds its oldest publications, then any
        other entry left (pinned ones: their flushed publications only). An unpinned
        ``channel`` whose bare position does not fit leaves L1. What stays over budget
        is unflushed write-behind publications (see the module docstring)."""
        self.evict(now, keep=channel)  # a newcomer is never its own victim (LFU: 0 uses)
        entry = self.entries.get(channel)
        if entry is None or self.stats.bytes <= self.budget:
            return
        self._shed(entry)
        for other in list(self.entries.values()):
            if self.stats.bytes <= self.budget:
                return
            self._shed(other)
        if self.stats.bytes > self.budget and not entry.pinned and not entry.pubs:
            self._drop(channel, evicted=True)

    def top(self, channel: str) -> StreamPosition | None:
        entry = self.entries.get(channel)
        return None if entry is None else StreamPosition(entry.top, entry.epoch)

    # -- pinning, eviction --------------------------------------------------------------
    def pin(self, channel: str, delta: int) -> None:
        """``delta`` write-behind publications of ``channel`` entered L1 (+, before the
        append) or reached the engine (-). Unpinned ones no longer exceed the budget:
        they are shed at once if the shard is over it."""
        entry = self.entries.get(channel)
        if entry is not None:
            entry.pinned = max(0, entry.pinned + delta)
            if delta < 0:
                self._trim(entry)
                self._shed(entry)

    def invalidate(self, channel: str) -> None:
        self._drop(channel)

    def evict(self, now: float, keep: str | None = None) -> list[str]:
        """Bring the shard under budget (and, for ``ttl``, drop idle entries); ``keep``
        is never chosen (the entry being filled)."""
        victims: list[str] = []
        if self.eviction == "ttl":
            victims = expired_idle(self._candidates(keep), now, self.idle_ttl)
            for key in victims:
                self._drop(key, evicted=True)
        over = self.stats.bytes - self.budget
        if over > 0:
            more = choose_victims(self._candidates(keep), self.eviction, over=over, now=now,
                                  ttl=self.idle_ttl)
            for key in more:
                self._drop(key, evicted=True)
            victims += more
        return victims

    def _candidates(self, keep: str | None = None) -> list[Candidate]:
        return [Candidate(k, e.bytes + ENTRY_OVERHEAD, e.last_access, e.uses, e.pinned > 0)
                for k, e in self.entries.items() if k != keep]

    def _clear_pubs(self, entry: Entry) -> None:
        self.stats.bytes -= entry.bytes
        entry.pubs.clear()
        entry.bytes = 0

    def _drop(self, channel: str, evicted: bool = False) -> None:
        entry = self.entries.pop(channel, None)
        if entry is not None:
            self.stats.bytes -= entry.bytes + ENTRY_OVERHEAD
            self.stats.evictions += evicted

    def statistics(self) -> CacheStats:
        s = self.stats
        return CacheStats(s.hits, s.misses, s.evictions, s.bytes, len(self.entries))
