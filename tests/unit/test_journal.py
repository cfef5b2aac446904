"""Journey aggregates, the storm detector, the feed's batching, the memory ring and the
views: plain classes and functions, no event loop (the ring's coroutines are driven by
hand: they never await)."""

from __future__ import annotations

import random
from collections.abc import Coroutine
from typing import Any

import pytest

from broker.config import ConfigError, config_from_mapping
from broker.journal.aggregates import JourneyState, LogHistogram, StormDetector
from broker.journal.feed import JournalFeed, JourneyBatch
from broker.journal.store import MemoryJourneyStore
from broker.journal.view import annotate, funnel, sessions
from broker.monitor.alerts import DEFAULT_RULES, AlertEvaluator, parse_rules
from broker.shard.state import ShardState, Subscriber
from broker.types import Publication


def done(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the memory store's)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine suspended")


def ev(t: float, event: str, client: str = "c1", user: str = "u", **fields: Any) -> dict[str, Any]:
    return {"t": t, "event": event, "node": "n1", "client": client, "user": user, **fields}


def test_histogram_quantiles_are_within_its_precision() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(20_000)]
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.99):
        truth = ordered[int(q * len(ordered)) - 1]
        assert histogram.quantile(q) == pytest.approx(truth, rel=LogHistogram.PRECISION)
    assert LogHistogram().quantile(0.5) is None
    assert len(histogram.buckets) < 300  # bounded by the value range, not the count


def test_storm_detector_starts_and_ends_a_storm() -> None:
    storm = StormDetector(window=10.0, threshold=3)
    storm.add(0.0)
    storm.add(1.0)
    assert not storm.storming
    storm.add(2.0)
    assert storm.storming and storm.storms == 1
    assert storm.in_window(5.0) == 3
    assert storm.in_window(11.5) == 1 and not storm.storming  # 0 and 1 aged out
    for t in range(100):  # a long storm keeps a bounded list
        storm.add(20.0 + t * 0.01)
    assert len(storm.times) <= 4 * 3 and storm.storms == 2


def test_a_session_updates_every_aggregate() -> None:
    state = JourneyState(reconnect_window=60.0, storm_window=10.0, storm_threshold=2)
    state.observe(ev(10.0, "connect", time_to_connect=0.5))
    state.observe(ev(10.1, "subscribe", channel="a", recovering=False, replayed=0))
    state.observe(ev(11.0, "first_publication", channel="a"))
    state.observe(ev(12.0, "first_publication", channel="b"))  # once per connection
    state.observe(ev(20.0, "disconnect", code=3008))
    reconnect = state.observe(ev(23.0, "connect", client="c2", time_to_connect=0.1))
    assert reconnect is not None and reconnect["event"] == "reconnect"
    assert reconnect["time_away"] == pytest.approx(3.0)
    assert (reconnect["previous_client"], reconnect["previous_code"]) == ("c1", 3008)
    state.observe(ev(23.1, "subscribe", client="c2", channel="a", recovering=True,
                     recovered=False, replayed=0))
    state.observe(ev(23.2, "subscribe", client="c2", channel="b", recovering=True,
                     recovered=True, replayed=4))
    state.observe(ev(24.0, "auth_failure", client="c3", user="", code=3500))
    state.observe(ev(25.0, "limit", code=106, refused=False))
    summary = state.summary(25.0)
    assert summary["connects"] == 2 and summary["connect_attempts"] == 3
    assert summary["connect_success_ratio"] == pytest.approx(2 / 3)
    assert summary["auth_failures"] == {"3500": 1}
    assert (summary["recoveries"], summary["recovered"]) == (2, 1)
    assert summary["recovery_success_ratio"] == 0.5
    assert summary["publications_replayed"] == 4
    assert summary["disconnects_by_code"] == {"3008": 1}
    assert summary["limits"] == {"106": 1}
    # socket open at 9.5, first publication at 11.0; c2 opened at 22.9, replayed at 23.2
    assert summary["time_to_first_publication"]["count"] == 2
    assert summary["funnel"] == {"connected": 2, "subscribed": 2, "first_publication": 2}
    assert summary["reconnects"] == 1 and summary["open_connections"] == 1
    assert summary["time_to_connect"]["count"] == 2


def test_reconnect_only_within_the_window_and_once_per_disconnect() -> None:
    state = JourneyState(reconnect_window=5.0)
    state.observe(ev(0.0, "connect"))
    state.observe(ev(1.0, "disconnect", code=1006))
    assert state.observe(ev(10.0, "connect", client="c2")) is None  # 9 s away > 5 s
    state.observe(ev(11.0, "disconnect", client="c2", code=3000))
    assert state.observe(ev(12.0, "connect", client="c3")) is not None
    assert state.observe(ev(12.5, "connect", client="c4")) is None  # already consumed
    assert state.observe(ev(13.0, "connect", client="c5", user="")) is None  # anonymous


def test_a_reconnect_storm_raises_the_default_alert() -> None:
    state = JourneyState(reconnect_window=60.0, storm_window=10.0, storm_threshold=3)
    rules = AlertEvaluator(parse_rules(DEFAULT_RULES))
    fired: list[str] = []
    for n in range(3):
        user = f"u{n}"
        state.observe(ev(float(n), "connect", client=f"a{n}", user=user))
        state.observe(ev(n + 0.5, "disconnect", client=f"a{n}", user=user, code=3001))
        state.observe(ev(n + 0.9, "connect", client=f"b{n}", user=user))
        fired += [a.rule.name for a in rules.observe(n + 1.0, state.storm_figures(n + 1.0))]
    assert fired == ["reconnect_storm"]
    resolved = rules.observe(30.0, state.storm_figures(30.0))
    assert [a.rule.name for a in resolved] == ["reconnect_storm"]
    assert resolved[0].resolved_at == 30.0


def test_tracked_connections_and_users_stay_bounded() -> None:
    state = JourneyState(max_open=100, max_users=50)
    for n in range(1000):
        state.observe(ev(float(n), "connect", client=f"c{n}", user=f"u{n}"))
        if n % 2:
            state.observe(ev(n + 0.5, "disconnect", client=f"c{n}", user=f"u{n}", code=n))
    assert len(state.open) <= 100 and len(state.last_disconnect) <= 50
    assert len(state.disconnects) <= 65  # MAX_CODES distinct codes, then "other"
    assert state.disconnects["other"] > 0


def test_feed_batches_one_iteration_into_one_tell() -> None:
    told: list[JourneyBatch] = []
    scheduled: list[Any] = []

    class Loop:
        def call_soon(self, callback: Any) -> None:
            scheduled.append(callback)

    feed = JournalFeed("n1", told.append, Loop(), clock=lambda: 5.0,  # type: ignore[arg-type]
                       max_pending=3)
    for n in range(5):
        feed.record("connect", f"c{n}", "u", {"transport": "websocket"})
    assert len(scheduled) == 1 and not told  # one flush scheduled, nothing told yet
    scheduled[0]()
    assert [len(b.events) for b in told] == [3] and feed.dropped == 2
    assert told[0].events[0] == {"t": 5.0, "event": "connect", "node": "n1", "client": "c0",
                                 "user": "u", "transport": "websocket"}


def test_memory_ring_keeps_the_last_events_and_filters_by_user() -> None:
    store = MemoryJourneyStore(ring_size=4)
    store.append_now([ev(float(n), "connect", client=f"c{n}", user="a" if n % 2 else "b")
                      for n in range(6)])
    assert [e["client"] for e in done(store.recent(10))] == ["c2", "c3", "c4", "c5"]
    assert [e["client"] for e in done(store.user_events("a", 10))] == ["c3", "c5"]
    assert [e["client"] for e in done(store.user_events("a", 1))] == ["c5"]
    store.append_now([ev(7.0, "disconnect", client="c5", user="a", code=3000)])
    assert done(store.last_disconnects(["a", "b"]))["a"]["code"] == 3000


def test_views_annotate_reconnects_and_count_the_funnel() -> None:
    events = [
        ev(0.0, "connect", time_to_connect=0.1, transport="websocket"),
        ev(0.1, "subscribe", channel="a", recovering=False, replayed=0),
        ev(1.0, "disconnect", code=1006, reason="lost"),
        ev(2.0, "connect", client="c2"),
        ev(2.0, "reconnect", client="c2", time_away=1.0),
        ev(2.1, "subscribe", client="c2", channel="a", recovering=True, recovered=True,
           replayed=3),
        ev(2.1, "subscribe", client="c2", channel="b", recovering=True, recovered=False,
           replayed=0),
    ]
    annotated = annotate(events)
    assert annotated[4]["missed"] == {"publications_replayed": 3, "recovered": ["a"],
                                      "unrecovered": ["b"]}
    assert "missed" not in events[4]  # copies
    assert funnel(events) == {"connected": 2, "subscribed": 2, "first_publication": 1}
    rows = sessions(annotated)
    assert [(r["client"], r["code"], r["subscriptions"]) for r in rows] == [
        ("c1", 1006, 1), ("c2", None, 2)]
    assert rows[1]["time_away"] == 1.0


def test_shard_reports_a_first_publication_once_and_respects_filters() -> None:
    state = ShardState()
    outbox: Any = object()
    delivery: Any = object()
    state.add("ch", Subscriber("plain", outbox, delivery))
    state.add("ch", Subscriber("picky", outbox, delivery, predicate=lambda tags: "x" in tags))
    state.add("ch", Subscriber("untracked", outbox, delivery))
    assert state.activate("ch", "plain", 0, track_first=True) == []
    assert state.activate("ch", "picky", 0, track_first=True) == []
    state.activate("ch", "untracked", 0)
    chan = state.channels["ch"]
    assert set(chan.awaiting_first) == {"plain", "picky"}
    assert state.take_first(chan, Publication(b"1", offset=1)) == ["plain"]
    assert state.take_first(chan, Publication(b"2", offset=2, tags={"x": "1"})) == ["picky"]
    assert not chan.awaiting_first  # the broadcast loop's check is now one falsy test
    state.add("ch", Subscriber("gone", outbox, delivery))
    state.activate("ch", "gone", 0, track_first=True)
    state.remove("ch", "gone")
    assert not chan.awaiting_first


@pytest.mark.parametrize(("journeys", "message"), [
    ({"storm_threshold": 0}, "journeys.storm_threshold"),
    ({"ring_size": 0}, "journeys.ring_size"),
    ({"stream_ttl": 0}, "journeys.stream_ttl"),
    ({"storm_window": "10m", "reconnect_window": "1m"}, "journeys.storm_window"),
    ({"reconnect_window": "soon"}, "journeys.reconnect_window"),
    ({"enabled": "yes"}, "journeys.enabled"),
])
def test_bad_journey_keys_stop_the_start_naming_the_key(journeys: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_from_mapping({"client": {"insecure": True}, "journeys": journeys})
