"""broker.cache's pure parts beyond the store: adaptive decisions, hotness, cache-mode
recovery, and a trimmed (shrunk) L1 entry that never answers for what it dropped."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from broker.cache.adaptive import AdaptiveLimits, AdaptivePolicy, limits_from
from broker.cache.heat import HeatMap
from broker.cache.lastvalue import cache_recovered
from broker.cache.store import ChannelCache
from broker.config import CacheConfig
from broker.types import Publication, StreamPosition

LIMITS = AdaptiveLimits(window=1.0, write_behind_rate=10, read_ratio=0.1,
                        cold_read_rate=2, min_l1=1, write_behind=True)  # a single writer


def pub(offset: int) -> Publication:
    return Publication(b"x", offset, None, None, 0)


def burst(policy: AdaptivePolicy, channel: str, publishes: int, reads: int, start: float,
          configured: str = "write_through", size: int = 10) -> list[str]:
    """One window of traffic (evenly spread), then close it; the changes as text."""
    for i in range(publishes):
        policy.record(channel, "publish", start + i / (publishes + 1) * 0.9, configured, size)
    for i in range(reads):
        policy.record(channel, "read", start + i / (reads + 1) * 0.9, configured, size)
    return [f"{c.kind}:{c.old}->{c.new}" for c in policy.decide(start + 1.0)]


def test_write_heavy_channel_goes_write_behind_and_back_with_hysteresis() -> None:
    policy = AdaptivePolicy(LIMITS)
    assert burst(policy, "a", 20, 0, 0) == ["policy:write_through->write_behind",
                                            "l1_size:10->1"]
    assert policy.policy("a", "write_through") == "write_behind"
    assert burst(policy, "a", 7, 0, 1) == []  # 7/s: under 10 but not under half: stays
    assert burst(policy, "a", 4, 0, 2) == ["policy:write_behind->write_through"]
    assert policy.policy("a", "write_through") == "write_through"


def test_read_heavy_or_explicit_channels_keep_their_policy() -> None:
    policy = AdaptivePolicy(LIMITS)
    assert burst(policy, "r", 20, 10, 0) == []  # 0.5 reads per publish: not write-heavy
    assert burst(policy, "wb", 0, 5, 1, configured="write_behind") == []
    assert burst(policy, "rt", 50, 0, 2, configured="read_through") == ["l1_size:10->1"]
    assert policy.policy("rt", "read_through") == "read_through"


def test_l1_share_shrinks_when_cold_and_grows_when_read() -> None:
    policy = AdaptivePolicy(LIMITS)
    assert burst(policy, "c", 1, 0, 0) == ["l1_size:10->1"]
    assert policy.l1_size("c", 10) == 1
    assert burst(policy, "c", 0, 1, 1) == []  # 1 read/s: between the thresholds
    assert burst(policy, "c", 0, 3, 2) == ["l1_size:1->10"]
    assert policy.l1_size("c", 10) == 10 and policy.policies == {}


def test_record_closes_the_window_itself_and_limits_are_checked() -> None:
    policy = AdaptivePolicy(LIMITS)
    for i in range(30):
        policy.record("a", "publish", i * 0.03, "write_through", 5)
    changes = policy.record("a", "publish", 1.0, "write_through", 5)
    assert [c.new for c in changes] == ["write_behind", 1]
    assert changes[0].as_dict()["channel"] == "a" and "pub/s" in changes[0].reason
    with pytest.raises(ValueError):
        AdaptivePolicy(AdaptiveLimits(min_l1=0))


def test_write_behind_is_never_chosen_without_a_single_writer() -> None:
    policy = AdaptivePolicy(dataclasses.replace(LIMITS, write_behind=False))
    assert burst(policy, "a", 50, 0, 0) == ["l1_size:10->1"]  # write-heavy, yet stays
    assert policy.policy("a", "write_through") == "write_through"


def test_limits_from_config_allow_write_behind_only_with_a_single_writer(
        caplog: pytest.LogCaptureFixture) -> None:
    adaptive = CacheConfig(adaptive=True, adaptive_max_channels=7, adaptive_forget_after=3)
    with caplog.at_level(logging.INFO, "chorus.cache"):
        assert limits_from(adaptive, "memory").write_behind  # one process by construction
        assert not caplog.records
        redis = limits_from(adaptive, "redis")
        assert not redis.write_behind and (redis.max_channels, redis.forget_after) == (7, 3)
        assert len(caplog.records) == 1  # once, with the reason and the key to set
        assert "cache.single_writer" in caplog.text and "engine.type is redis" in caplog.text
    declared = dataclasses.replace(adaptive, single_writer=True)
    assert limits_from(declared, "redis").write_behind


def test_cold_channels_are_forgotten_after_idle_windows() -> None:
    """A channel shrunk (cold) and then silent for ``forget_after`` windows is
    forgotten: back to its full L1 size, reported as a change for the caller to apply."""
    policy = AdaptivePolicy(dataclasses.replace(LIMITS, forget_after=3))
    assert burst(policy, "a", 1, 0, 0) == ["l1_size:10->1"]  # last active at 0
    assert burst(policy, "b", 1, 0, 1) == ["l1_size:10->1"]  # last active at 1
    assert len(policy) == 2 and policy.decide(2.9) == []  # idle 2.9 windows
    forgotten = policy.decide(3.0)
    assert [(c.channel, c.kind, c.old, c.new) for c in forgotten] == [("a", "l1_size", 1, 10)]
    assert forgotten[0].reason == "forgotten: idle for 3 windows"
    assert len(policy) == 1 and policy.l1_size("a", 10) == 10
    assert [c.channel for c in policy.decide(4.0)] == ["b"]
    assert len(policy) == 0 and policy.l1_sizes == {} and policy.policies == {}


def test_tracked_channels_stay_under_the_cap_for_100k_channels() -> None:
    """100,000 distinct channels, each published once over five windows (each window
    shrinks its channels' L1 share: overrides to remember): the tracked count, and every
    per-channel table, never passes ``max_channels``; a channel forgotten to make room
    returns to its configured policy and size."""
    cap = 1000
    policy = AdaptivePolicy(dataclasses.replace(LIMITS, max_channels=cap, forget_after=2))
    assert burst(policy, "wb", 20, 0, 0) == ["policy:write_through->write_behind",
                                             "l1_size:10->1"]
    reverted: list[tuple[str, str, str | int]] = []
    for i in range(100_000):
        now = 1.0 + i * 5e-5  # 20K channels a window
        for change in policy.record(f"ch{i}", "publish", now, "write_through", 10):
            if change.reason.startswith("forgotten: over 1000 tracked channels"):
                reverted.append((change.channel, change.kind, change.new))
        assert len(policy) <= cap
        assert len(policy.policies) + len(policy.l1_sizes) <= 2 * cap
        assert len(policy._publishes) + len(policy._reads) <= cap
    # "wb" was the least recently active: forgotten first, back to its configuration
    assert reverted[:2] == [("wb", "policy", "write_through"), ("wb", "l1_size", 10)]
    assert policy.policy("wb", "write_through") == "write_through"
    assert policy.l1_size("wb", 10) == 10
    assert len(reverted) > 3000  # each window's 1000 shrunk, then forgotten: size 10
    assert all(kind == "l1_size" and new == 10 for _, kind, new in reverted[2:])
    policy.decide(6.5)
    assert len(policy) <= cap and len(policy.l1_sizes) <= cap


def test_heat_map_stays_bounded_for_100k_channels() -> None:
    heat = HeatMap(max_channels=1000)
    for i in range(100_000):
        heat.touch(f"ch{i}", i * 1e-3)
        assert len(heat) <= 1000
    assert heat.hottest(1, 100.0) == ["ch99999"]


def test_heat_ranks_by_decayed_use_and_is_bounded() -> None:
    heat = HeatMap(half_life=10, max_channels=4)
    for _ in range(4):
        heat.touch("old", 0)
    heat.touch("new", 30)
    heat.touch("new", 30)  # 2 now vs 4 * 1/8 = 0.5
    assert heat.hottest(2, 30) == ["new", "old"]
    assert heat.hottest(5, 30, lambda c: c != "new") == ["old"]
    for name in "abcd":
        heat.touch(name, 30)
    assert len(heat) <= 4 and "new" in heat.hottest(4, 30)


def test_cache_recovered_follows_centrifuge() -> None:
    top = StreamPosition(5, "e")
    assert cache_recovered(pub(5), top, StreamPosition(0, "")) == ([pub(5)], True)
    assert cache_recovered(pub(5), top, StreamPosition(3, "e")) == ([pub(5)], True)
    assert cache_recovered(pub(5), top, StreamPosition(5, "e")) == ([], True)  # has it
    assert cache_recovered(None, top, StreamPosition(0, "")) == ([], False)
    assert cache_recovered(None, top, StreamPosition(5, "e")) == ([], True)
    assert cache_recovered(pub(4), top, StreamPosition(0, "")) == ([], False)


def test_trimmed_entry_misses_what_it_dropped() -> None:
    cache = ChannelCache(100_000)
    cache.load("a", [pub(i) for i in range(1, 6)], StreamPosition(5, "e"), size=10,
               ttl=99, now=0, full=10)
    cache.resize("a", 2)  # keeps 4, 5; the engine still holds 1..5
    assert cache.read("a", None, -1, False, 1) is None
    assert cache.read("a", None, 3, True, 1) is None
    assert [p.offset for p in cache.read("a", None, 2, True, 1)[0]] == [5, 4]  # type: ignore[index]
    assert [p.offset for p in cache.read("a", StreamPosition(3, "e"), -1, False, 1)[0]] == [4, 5]  # type: ignore[index]
    assert cache.read("a", StreamPosition(2, "e"), -1, False, 1) is None
    assert cache.read("a", None, 0, False, 1) == ([], StreamPosition(5, "e"))
    cache.append("a", pub(6), "e", now=1)
    assert [p.offset for p in cache.entries["a"].pubs] == [5, 6]
    cache.resize("a", 10)  # growing: reloaded on the next read
    assert cache.top("a") is None
