"""Refresh-ahead without a loop: which entries are due (RefreshPlanner) and how a reload
lands in a shard's L1 (ChannelCache.refresh), including the races with the engine call."""

from __future__ import annotations

import pytest

from broker.cache.heat import HeatMap
from broker.cache.lru import Candidate
from broker.cache.refresh import HOT_SCORE, RefreshPlanner
from broker.cache.store import ChannelCache
from broker.config import CacheConfig, ConfigError, config_from_mapping
from broker.types import Publication, StreamPosition

TTL = 10.0


def pub(offset: int) -> Publication:
    return Publication(b"x", offset, None, None, 0)


def cand(key: str, last_access: float, pinned: bool = False) -> Candidate:
    return Candidate(key, 100, last_access, 1, pinned)


def test_only_hot_entries_idle_past_the_lead_are_due_hottest_first() -> None:
    planner = RefreshPlanner(TTL, 0.8)
    assert planner.lead == pytest.approx(8.0) and planner.interval == pytest.approx(1.0)
    heat = {"hot": 10.0, "warm": HOT_SCORE, "cold": HOT_SCORE - 0.5, "fresh": 50.0,
            "pinned": 50.0, "late": 5.0}
    now = 100.0
    candidates = [cand("hot", now - 8.0), cand("warm", now - 9.0), cand("cold", now - 9.9),
                  cand("fresh", now - 7.9), cand("pinned", now - 9.0, pinned=True),
                  cand("late", now - 12.0)]  # past its ttl, not swept yet: still saved
    assert planner.due(candidates, now, heat.__getitem__) == ["hot", "late", "warm"]


def test_heat_is_asked_only_about_entries_due_by_age() -> None:
    asked: list[str] = []

    def score(key: str) -> float:
        asked.append(key)
        return 100.0

    RefreshPlanner(TTL, 0.5).due([cand("a", 0.0), cand("b", 9.0)], 10.0, score)
    assert asked == ["a"]


def test_due_is_capped_per_tick_and_off_when_the_fraction_is_zero() -> None:
    many = [cand(f"c{i:03}", 0.0) for i in range(50)]
    capped = RefreshPlanner(TTL, 0.5, max_per_tick=5)
    assert capped.due(many, 100.0, lambda _: 4.0) == [f"c{i:03}" for i in range(5)]
    off = RefreshPlanner(TTL, 0.0)
    assert not off.enabled and off.due(many, 100.0, lambda _: 100.0) == []
    with pytest.raises(ValueError, match="fraction"):
        RefreshPlanner(TTL, 1.0)


def test_a_burst_of_reads_cools_below_hot_after_some_half_lives() -> None:
    heat = HeatMap(half_life=10.0)
    for _ in range(6):
        heat.touch("ch", 0.0)
    planner = RefreshPlanner(TTL, 0.5)
    assert planner.due([cand("ch", 0.0)], 5.0, lambda c: heat.score(c, 5.0)) == ["ch"]
    # refreshes do not heat it: 6 -> below 3 after one half-life and a bit
    assert planner.due([cand("ch", 0.0)], 11.0, lambda c: heat.score(c, 11.0)) == []


def test_refresh_replaces_the_window_keeps_uses_and_restarts_the_idle_clock() -> None:
    cache = ChannelCache(10_000, "ttl", idle_ttl=TTL)
    cache.load("a", [pub(1), pub(2)], StreamPosition(2, "e"), size=5, ttl=100, now=0.0)
    for _ in range(3):
        assert cache.read("a", None, -1, False, 1.0) is not None
    engine_now = [pub(1), pub(2), pub(3)]  # another node published offset 3
    assert cache.refresh("a", engine_now, StreamPosition(3, "e"), size=5, ttl=100, now=9.0)
    entry = cache.entries["a"]
    assert (entry.top, entry.uses, entry.last_access) == (3, 3, 9.0)
    found = cache.read("a", None, -1, False, 9.0 + TTL - 0.1)  # would have expired at 10
    assert found is not None and [p.offset for p in found[0]] == [1, 2, 3]
    assert cache.statistics().evictions == 0


def test_refresh_never_recreates_a_gone_entry_nor_rolls_one_back() -> None:
    cache = ChannelCache(10_000, "ttl", idle_ttl=TTL)
    assert not cache.refresh("gone", [pub(1)], StreamPosition(1, "e"), size=5, ttl=100,
                             now=1.0)
    assert "gone" not in cache.entries
    cache.load("a", [pub(1)], StreamPosition(1, "e"), size=5, ttl=100, now=0.0)
    assert cache.append("a", pub(2), "e", now=0.5)  # published while the engine answered
    assert cache.refresh("a", [pub(1)], StreamPosition(1, "e"), size=5, ttl=100, now=8.0)
    entry = cache.entries["a"]
    assert (entry.top, len(entry.pubs), entry.last_access) == (2, 2, 8.0)
    cache.pin("a", 1)  # write-behind publications: L1 is ahead of the engine
    assert cache.refresh("a", [], StreamPosition(0, "new"), size=5, ttl=100, now=9.0)
    assert (cache.entries["a"].top, cache.entries["a"].epoch) == (2, "e")


def test_refresh_ahead_config_option() -> None:
    assert CacheConfig().refresh_ahead == 0.0
    insecure = {"client": {"insecure": True}, "http_api": {"insecure": True}}
    config = config_from_mapping({**insecure, "cache": {"eviction": "ttl", "refresh_ahead": 0.8}})
    assert config.cache.refresh_ahead == 0.8
    with pytest.raises(ConfigError, match="refresh_ahead"):
        config_from_mapping({**insecure, "cache": {"refresh_ahead": 1.5}})
