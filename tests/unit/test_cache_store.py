"""broker.cache without a loop: L1 reads mirror the engine, eviction, write-behind buffer."""

from __future__ import annotations

import pytest

from broker.cache.lru import Candidate, choose_victims, expired_idle
from broker.cache.policy import Pending, WriteBehindBuffer
from broker.cache.store import OVERHEAD, ChannelCache
from broker.types import Publication, StreamPosition


def pub(offset: int, data: bytes = b"x") -> Publication:
    return Publication(data, offset, None, None, 0)


def loaded(cache: ChannelCache, channel: str, top: int, size: int = 3,
           now: float = 0.0) -> None:
    pubs = [pub(i) for i in range(max(1, top - size + 1), top + 1)]
    cache.load(channel, pubs, StreamPosition(top, "e"), size=size, ttl=100, now=now)


def offsets(found: tuple[list[Publication], StreamPosition] | None) -> list[int] | None:
    return None if found is None else [p.offset for p in found[0]]


def test_reads_hit_like_the_engine_and_doubtful_ones_miss() -> None:
    cache = ChannelCache(10_000)
    assert cache.read("a", None, -1, False, 0) is None  # not cached
    loaded(cache, "a", 5)  # holds 3, 4, 5
    assert offsets(cache.read("a", None, -1, False, 1)) == [3, 4, 5]
    assert offsets(cache.read("a", None, 2, True, 1)) == [5, 4]
    assert offsets(cache.read("a", StreamPosition(3, "e"), -1, False, 1)) == [4, 5]
    assert offsets(cache.read("a", StreamPosition(2, "e"), 1, False, 1)) == [3]
    assert offsets(cache.read("a", StreamPosition(5, "e"), -1, True, 1)) == [4, 3]
    assert cache.read("a", StreamPosition(1, "e"), -1, False, 1) is None  # trimmed
    assert cache.read("a", StreamPosition(3, "other"), -1, False, 1) is None
    assert cache.read("a", StreamPosition(9, "e"), -1, False, 1) is None
    assert cache.read("a", None, 0, False, 1) == ([], StreamPosition(5, "e"))
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.entries) == (6, 4, 1)


def test_append_extends_trims_and_drops_on_gap_or_epoch() -> None:
    cache = ChannelCache(10_000)
    loaded(cache, "a", 5)
    assert cache.append("a", pub(6), "e", now=1)
    assert offsets(cache.read("a", None, -1, False, 1)) == [4, 5, 6]
    assert cache.append("a", pub(6), "e", now=1)  # already there
    assert not cache.append("a", pub(8), "e", now=1)  # a gap: no longer a mirror
    assert cache.top("a") is None
    assert not cache.append("b", pub(3), "e", now=1, create=True, size=3, ttl=9)
    assert cache.append("b", pub(1), "e", now=1, create=True, size=3, ttl=9)
    assert cache.top("b") == StreamPosition(1, "e")
    loaded(cache, "c", 2)
    assert not cache.append("c", pub(3), "new-epoch", now=1)


def test_history_ttl_empties_publications_but_keeps_the_position() -> None:
    cache = ChannelCache(10_000)
    cache.load("a", [pub(1)], StreamPosition(1, "e"), size=3, ttl=10, now=0)
    assert cache.read("a", None, -1, False, 11) == ([], StreamPosition(1, "e"))
    assert cache.read("a", StreamPosition(0, "e"), -1, False, 11) is None


def test_lru_eviction_under_budget_keeps_recent_and_pinned() -> None:
    entry = OVERHEAD + 1  # one publication of one byte
    cache = ChannelCache(3 * entry, "lru")
    for i, name in enumerate("abc"):
        cache.load(name, [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=i)
    cache.pin("a", 1)
    cache.read("b", None, -1, False, 5)
    cache.load("d", [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=6)
    assert set(cache.entries) == {"a", "b", "d"}  # c: least recently used, unpinned
    assert cache.statistics().evictions == 1 and cache.statistics().bytes <= 3 * entry


def test_lfu_evicts_the_least_used() -> None:
    entry = OVERHEAD + 1
    cache = ChannelCache(2 * entry, "lfu")
    cache.load("a", [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=0)
    cache.load("b", [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=1)
    for t in range(3):
        cache.read("a", None, -1, False, 2 + t)
    cache.read("b", None, -1, False, 9)  # more recent, but used less
    cache.load("c", [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=10)
    assert set(cache.entries) == {"a", "c"}


def test_ttl_eviction_drops_idle_entries() -> None:
    cache = ChannelCache(10_000, "ttl", idle_ttl=5)
    loaded(cache, "a", 1, now=0)
    loaded(cache, "b", 1, now=4)
    assert cache.evict(now=6) == ["a"]
    assert cache.read("b", None, -1, False, 20) is None  # idle past ttl: gone on read
    assert cache.statistics().evictions == 2


def test_choose_victims_orders_and_rejects_unknown_policy() -> None:
    cands = [Candidate("old", 10, 1, 9, False), Candidate("new", 10, 5, 1, False),
             Candidate("pinned", 10, 0, 0, True)]
    assert choose_victims(cands, "lru", over=5, now=6, ttl=3) == ["old"]
    assert choose_victims(cands, "lfu", over=5, now=6, ttl=3) == ["new"]
    assert choose_victims(cands, "ttl", over=15, now=6, ttl=3) == ["old", "new"]
    assert expired_idle(cands, 6, 3) == ["old"]
    with pytest.raises(ValueError):
        choose_victims(cands, "random", over=1, now=0, ttl=1)


def test_write_behind_buffer_is_ordered_bounded_and_measures_lag() -> None:
    buffer = WriteBehindBuffer(max_pending=2)
    first = Pending("a", pub(1), 3, 9, acked_at=1.0)
    assert buffer.add(first) is True  # arm the timer
    assert buffer.add(Pending("a", pub(2), 3, 9, acked_at=1.5)) is False
    with pytest.raises(OverflowError):
        buffer.add(Pending("a", pub(3), 3, 9, acked_at=2.0))
    batch = buffer.take()
    assert [p.pub.offset for p in batch] == [1, 2] and len(buffer) == 0
    buffer.written(batch[0], now=1.25)
    buffer.put_back(batch[1:])
    assert buffer.channels() == {"a"} and (buffer.flushed, buffer.max_lag) == (1, 0.25)
