"""broker.cache without a loop: L1 reads mirror the engine, eviction, write-behind buffer."""

from __future__ import annotations

import random

import pytest

from broker.cache.lru import Candidate, choose_victims, expired_idle
from broker.cache.policy import Pending, WriteBehindBuffer
from broker.cache.store import ENTRY_OVERHEAD, OVERHEAD, ChannelCache
from broker.engine.base import UnrecoverablePosition
from broker.engine.state import HistoryStream
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
    entry = ENTRY_OVERHEAD + OVERHEAD + 1  # a channel holding one publication of one byte
    cache = ChannelCache(3 * entry, "lru")
    for i, name in enumerate("abc"):
        cache.load(name, [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=i)
    cache.pin("a", 1)
    cache.read("b", None, -1, False, 5)
    cache.load("d", [pub(1)], StreamPosition(1, "e"), size=1, ttl=99, now=6)
    assert set(cache.entries) == {"a", "b", "d"}  # c: least recently used, unpinned
    assert cache.statistics().evictions == 1 and cache.statistics().bytes <= 3 * entry


def test_lfu_evicts_the_least_used() -> None:
    entry = ENTRY_OVERHEAD + OVERHEAD + 1
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


# -- the budget bounds every channel, the one being filled included ------------------

def big(offset: int, size: int) -> Publication:
    return Publication(b"x" * size, offset, None, None, 0)


def engine_answer(stream: HistoryStream, since: StreamPosition | None, limit: int,
                  reverse: bool) -> tuple[list[Publication], StreamPosition] | None:
    """The memory engine's own answer (None where it raises)."""
    try:
        return stream.since(since, limit, reverse, now=1.0)
    except UnrecoverablePosition:
        return None


def assert_answers_only_exactly(cache: ChannelCache, stream: HistoryStream) -> int:
    """Every read L1 answers is the engine's answer, to the publication; returns how many
    it answered (the rest are misses, which the layer sends to the engine)."""
    answered = 0
    sinces = [None, *(StreamPosition(o, stream.epoch) for o in range(stream.top + 2))]
    for since in sinces:
        for limit in (-1, 0, 1, 2, 3, 5, 50):
            for reverse in (False, True):
                found = cache.read("a", since, limit, reverse, 1.0)
                if found is not None:
                    assert found == engine_answer(stream, since, limit, reverse), (
                        since, limit, reverse)
                    answered += 1
    return answered


def test_budget_trims_the_hot_channel_from_its_oldest_end() -> None:
    """The reproduced defect: one hot channel (big publications, history_size 1000)
    held 6 MB under a 10 KB budget. Now it sheds its oldest publications instead."""
    budget = 10_000
    cache, stream = ChannelCache(budget), HistoryStream()
    cache.load("a", [], StreamPosition(0, stream.epoch), size=1000, ttl=100, now=0)
    for i in range(300):
        pub_, _ = stream.append(b"x" * 2000, None, None, size=1000, ttl=100, now=0,
                                time_ms=0)
        assert cache.append("a", pub_, stream.epoch, now=i / 1000)
        assert cache.statistics().bytes <= budget
    entry = cache.entries["a"]
    held = [p.offset for p in entry.pubs]
    assert held == list(range(300 - len(held) + 1, 301)) and 1 <= len(held) < 10  # newest
    assert entry.trimmed and cache.top("a") == StreamPosition(300, stream.epoch)
    assert assert_answers_only_exactly(cache, stream) > 0
    assert cache.read("a", None, -1, False, 1.0) is None  # the whole window: the engine's
    newest = cache.read("a", None, len(held), True, 1.0)
    assert newest is not None and [p.offset for p in newest[0]] == held[::-1]


def test_answers_stay_exact_through_random_budget_pressure() -> None:
    """Random publication sizes, some bigger than the budget, history_size 20: after
    every append the shard is within budget and every answer L1 gives is the engine's."""
    rng = random.Random(7)
    budget = 3000
    cache, stream = ChannelCache(budget), HistoryStream()
    cache.load("a", [], StreamPosition(0, stream.epoch), size=20, ttl=100, now=0)
    answered = 0
    for i in range(120):
        size = rng.choice([10, 100, 400, 900, 4000])
        pub_, _ = stream.append(b"y" * size, None, None, size=20, ttl=100, now=0,
                                time_ms=0)
        cache.append("a", pub_, stream.epoch, now=i / 1000)
        assert cache.statistics().bytes <= budget
        assert cache.top("a") == StreamPosition(stream.top, stream.epoch)
        answered += assert_answers_only_exactly(cache, stream)
    assert answered > 0


def test_a_publication_bigger_than_the_budget_is_not_cached() -> None:
    cache = ChannelCache(2000)
    cache.load("a", [pub(1)], StreamPosition(1, "e"), size=10, ttl=100, now=0)
    assert cache.append("a", big(2, 5000), "e", now=1)  # accepted, position only
    assert not cache.entries["a"].pubs and cache.statistics().bytes == ENTRY_OVERHEAD
    assert cache.read("a", None, 0, False, 1) == ([], StreamPosition(2, "e"))
    assert cache.read("a", None, 1, True, 1) is None  # the engine has it, L1 does not
    assert cache.read("a", StreamPosition(1, "e"), -1, False, 1) is None
    assert cache.read("a", StreamPosition(2, "e"), -1, False, 1) == (
        [], StreamPosition(2, "e"))  # nothing after the top: exact
    cache.append("a", pub(3), "e", now=2)  # a small one fits again
    assert offsets(cache.read("a", None, 1, True, 2)) == [3]
    assert offsets(cache.read("a", StreamPosition(2, "e"), -1, False, 2)) == [3]
    assert cache.read("a", None, 2, True, 2) is None
    cache.load("b", [big(1, 5000)], StreamPosition(1, "e"), size=10, ttl=100, now=3)
    assert cache.top("b") == StreamPosition(1, "e") and not cache.entries["b"].pubs


def test_other_channels_leave_before_the_filled_one_sheds() -> None:
    entry = ENTRY_OVERHEAD + OVERHEAD + 100
    cache = ChannelCache(3 * entry)
    for i, name in enumerate("abc"):
        cache.load(name, [big(1, 100)], StreamPosition(1, "e"), size=5, ttl=99, now=i)
    cache.append("c", big(2, 100), "e", now=5)  # over by one publication: "a" leaves
    assert set(cache.entries) == {"b", "c"} and len(cache.entries["c"].pubs) == 2
    cache.append("c", big(3, 3 * entry), "e", now=6)  # bigger than everything
    assert set(cache.entries) == {"c"} and not cache.entries["c"].pubs
    assert cache.statistics().bytes <= 3 * entry


def test_pinned_write_behind_publications_exceed_the_budget_until_flushed() -> None:
    """Unflushed publications are never shed (L1 is the only reader-visible copy): the
    shard is over budget by them alone, and back under it as each is flushed."""
    budget = ENTRY_OVERHEAD + 2 * (OVERHEAD + 1000)
    cache = ChannelCache(budget)
    cache.load("w", [], StreamPosition(0, "e"), size=10, ttl=99, now=0)
    cache.load("r", [pub(1)], StreamPosition(1, "e"), size=10, ttl=99, now=0)
    for offset in range(1, 5):  # the layer pins before it appends
        cache.pin("w", 1)
        assert cache.append("w", big(offset, 1000), "e", now=offset)
    assert "r" not in cache.entries  # evictable: gone first
    assert [p.offset for p in cache.entries["w"].pubs] == [1, 2, 3, 4]
    assert cache.statistics().bytes == ENTRY_OVERHEAD + 4 * (OVERHEAD + 1000) > budget
    assert offsets(cache.read("w", None, -1, False, 5)) == [1, 2, 3, 4]
    cache.load("n", [pub(1)], StreamPosition(1, "e"), size=10, ttl=99, now=6)
    assert "n" not in cache.entries  # a newcomer cannot displace pinned publications
    cache.pin("w", -1)  # 1 reached the engine: shed at once
    cache.pin("w", -1)
    assert [p.offset for p in cache.entries["w"].pubs] == [3, 4]
    assert cache.statistics().bytes <= budget and cache.entries["w"].trimmed
    assert cache.read("w", None, -1, False, 7) is None  # 1 and 2: from the engine now


def test_a_shrunk_l1_share_keeps_unflushed_publications() -> None:
    cache = ChannelCache(100_000)
    cache.load("w", [pub(1)], StreamPosition(1, "e"), size=10, ttl=99, now=0, full=10)
    for offset in (2, 3, 4):
        cache.pin("w", 1)
        cache.append("w", pub(offset), "e", now=1)
    cache.resize("w", 1)  # cold: keep 1 — but 2, 3, 4 are not in the engine yet
    assert [p.offset for p in cache.entries["w"].pubs] == [2, 3, 4]
    cache.pin("w", -3)
    assert [p.offset for p in cache.entries["w"].pubs] == [4]


def test_a_channel_whose_position_does_not_fit_is_not_cached() -> None:
    """Pinned publications hold the whole budget: a newcomer cannot get in, not even its
    position (the layer then reads from the engine, or refuses a write-behind publish)."""
    cache = ChannelCache(ENTRY_OVERHEAD + OVERHEAD + 10)
    cache.load("w", [], StreamPosition(0, "e"), size=10, ttl=99, now=0)
    cache.pin("w", 1)
    cache.append("w", big(1, 500), "e", now=1)
    assert not cache.append("n", pub(1), "e", now=2, create=True, size=5, ttl=9)
    assert cache.top("n") is None and cache.top("w") == StreamPosition(1, "e")
    cache.pin("w", -1)
    assert cache.append("n", pub(1), "e", now=3, create=True, size=5, ttl=9)
    assert offsets(cache.read("n", None, -1, False, 3)) == [1]
