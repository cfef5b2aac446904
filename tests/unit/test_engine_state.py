"""Pure engine state, driven by a hand-moved clock (no event loop)."""

from __future__ import annotations

import pytest

from broker.engine.base import UnrecoverablePosition
from broker.engine.state import (
    HistoryHub,
    HistoryStream,
    IdempotencyCache,
    PresenceTable,
    publication_size,
)
from broker.types import ClientInfo, Publication, StreamPosition


def fill(
    stream: HistoryStream, n: int, *, size: int = 10, ttl: float = 60.0, now: float = 0.0
) -> None:
    for i in range(n):
        stream.append(b"%d" % (i + 1), None, None, size=size, ttl=ttl, now=now, time_ms=1)


def offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


# -- HistoryStream -----------------------------------------------------------------------


def test_append_assigns_dense_offsets_in_one_epoch() -> None:
    stream = HistoryStream()
    results = [
        stream.append(b"x", None, {"k": "v"}, size=5, ttl=10, now=0, time_ms=7) for _ in range(3)
    ]
    assert [pos.offset for _, pos in results] == [1, 2, 3]
    assert {pos.epoch for _, pos in results} == {stream.epoch}
    pub = results[0][0]
    assert (pub.offset, pub.tags, pub.time) == (1, {"k": "v"}, 7)


def test_epochs_differ_between_streams() -> None:
    assert len({HistoryStream().epoch for _ in range(50)}) == 50


def test_size_trims_oldest_and_size_change_rebuilds_window() -> None:
    stream = HistoryStream()
    fill(stream, 7, size=3)
    assert offsets(stream.since(None, -1, False, 0)[0]) == [5, 6, 7]
    fill(stream, 1, size=2)
    assert offsets(stream.since(None, -1, False, 0)[0]) == [7, 8]
    assert stream.bytes == sum(publication_size(p) for p in stream.pubs)


def test_limit_and_reverse_without_since() -> None:
    stream = HistoryStream()
    fill(stream, 5)
    pubs, top = stream.since(None, 0, False, 0)
    assert pubs == [] and top == StreamPosition(5, stream.epoch)
    assert offsets(stream.since(None, 2, False, 0)[0]) == [1, 2]
    assert offsets(stream.since(None, 2, True, 0)[0]) == [5, 4]
    assert offsets(stream.since(None, -1, True, 0)[0]) == [5, 4, 3, 2, 1]


def test_since_forward_and_reverse() -> None:
    stream = HistoryStream()
    fill(stream, 5)
    pos = lambda o: StreamPosition(o, stream.epoch)  # noqa: E731
    assert offsets(stream.since(pos(2), -1, False, 0)[0]) == [3, 4, 5]
    assert offsets(stream.since(pos(2), 2, False, 0)[0]) == [3, 4]
    assert stream.since(pos(5), -1, False, 0)[0] == []
    assert offsets(stream.since(pos(4), -1, True, 0)[0]) == [3, 2, 1]
    assert offsets(stream.since(pos(4), 1, True, 0)[0]) == [3]
    assert stream.since(pos(1), -1, True, 0)[0] == []


def test_since_raises_on_wrong_epoch_gap_and_future_offset() -> None:
    stream = HistoryStream()
    fill(stream, 6, size=3)  # window holds 4..6
    with pytest.raises(UnrecoverablePosition):
        stream.since(StreamPosition(5, "other"), -1, False, 0)
    with pytest.raises(UnrecoverablePosition):
        stream.since(StreamPosition(2, stream.epoch), -1, False, 0)
    with pytest.raises(UnrecoverablePosition):
        stream.since(StreamPosition(7, stream.epoch), -1, False, 0)
    # offset 3 is just before the window: nothing is missing.
    assert offsets(stream.since(StreamPosition(3, stream.epoch), -1, False, 0)[0]) == [4, 5, 6]


def test_ttl_drops_publications_but_keeps_epoch_and_top() -> None:
    stream = HistoryStream()
    epoch = stream.epoch
    fill(stream, 3, ttl=5, now=0)
    assert len(stream.since(None, -1, False, 4.9)[0]) == 3
    pubs, top = stream.since(None, -1, False, 5.0)
    assert pubs == [] and top == StreamPosition(3, epoch) and stream.bytes == 0
    assert stream.since(StreamPosition(3, epoch), -1, False, 5.0)[0] == []
    with pytest.raises(UnrecoverablePosition):
        stream.since(StreamPosition(2, epoch), -1, False, 5.0)
    _, pos = stream.append(b"n", None, None, size=5, ttl=5, now=6, time_ms=1)
    assert pos == StreamPosition(4, epoch)


def test_append_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="history size"):
        HistoryStream().append(b"x", None, None, size=0, ttl=1, now=0, time_ms=0)


# -- HistoryHub --------------------------------------------------------------------------


def hub_append(
    hub: HistoryHub, ch: str, now: float, *, ttl: float = 10, meta: float = 100
) -> StreamPosition:
    return hub.append(ch, b"abcd", None, None, size=10, ttl=ttl, meta_ttl=meta, now=now, time_ms=0)[
        1
    ]


def test_hub_history_of_unknown_channel_creates_stable_epoch() -> None:
    hub = HistoryHub()
    _, top = hub.history("c", None, 0, False, meta_ttl=100, now=0)
    assert top.offset == 0
    assert hub_append(hub, "c", 1) == StreamPosition(1, top.epoch)


def test_hub_sweep_expires_publications_then_forgets_meta() -> None:
    hub = HistoryHub()
    pos = hub_append(hub, "c", 0, ttl=10, meta=100)
    assert hub.bytes == 4
    assert hub.sweep(9.9) == 0
    assert hub.sweep(10) == 1
    stats = hub.statistics()
    assert (stats.streams, stats.publications, stats.bytes, stats.expired) == (1, 0, 0, 1)
    assert hub.history("c", None, 0, False, meta_ttl=100, now=50)[1] == pos  # touches meta
    assert hub.sweep(149) == 0
    assert hub.sweep(150) == 1
    assert (hub.statistics().streams, hub.statistics().forgotten) == (0, 1)
    _, top = hub.history("c", None, 0, False, meta_ttl=100, now=151)
    assert top.offset == 0 and top.epoch != pos.epoch


def test_hub_meta_expiry_is_checked_on_access_without_sweep() -> None:
    hub = HistoryHub()
    pos = hub_append(hub, "c", 0, ttl=1, meta=5)
    new = hub_append(hub, "c", 5)
    assert new.offset == 1 and new.epoch != pos.epoch


def test_hub_meta_outlives_history_ttl() -> None:
    hub = HistoryHub()
    pos = hub_append(hub, "c", 0, ttl=50, meta=5)
    assert hub.history("c", None, -1, False, meta_ttl=5, now=49)[1] == pos


def test_hub_shortened_deadline_is_swept_on_time() -> None:
    hub = HistoryHub()
    hub_append(hub, "c", 0, ttl=100, meta=1000)
    hub_append(hub, "c", 1, ttl=2, meta=1000)  # stream now expires at 3, not 100
    assert hub.sweep(3) == 1 and hub.bytes == 0


def test_hub_remove_keeps_epoch_and_top_and_accounts_bytes() -> None:
    hub = HistoryHub()
    hub_append(hub, "c", 0)
    pos = hub_append(hub, "c", 0)
    hub.remove("c")
    hub.remove("unknown")
    assert hub.bytes == 0
    pubs, top = hub.history("c", None, -1, False, meta_ttl=100, now=1)
    assert pubs == [] and top == pos
    assert hub_append(hub, "c", 1) == StreamPosition(3, pos.epoch)


# -- PresenceTable -----------------------------------------------------------------------


def info(user: str, client: str) -> ClientInfo:
    return ClientInfo(user=user, client=client)


def test_presence_add_get_stats_two_clients_one_user() -> None:
    table = PresenceTable()
    table.add("c", "1", info("u", "1"), ttl=10, now=0)
    table.add("c", "2", info("u", "2"), ttl=10, now=0)
    table.add("c", "3", info("v", "3"), ttl=10, now=0)
    assert set(table.get("c", 1)) == {"1", "2", "3"}
    assert table.stats("c", 1) == (3, 2)
    assert table.remove("c", "1") and not table.remove("c", "1")
    assert table.stats("c", 1) == (2, 2)
    table.remove("c", "2")
    assert table.stats("c", 1) == (1, 1)


def test_presence_expires_and_refresh_extends() -> None:
    table = PresenceTable()
    table.add("c", "1", info("u", "1"), ttl=10, now=0)
    table.add("c", "2", info("u", "2"), ttl=10, now=0)
    table.add("c", "1", info("u", "1"), ttl=10, now=8)  # refresh
    assert set(table.get("c", 10)) == {"1"}
    assert table.stats("c", 10) == (1, 1)
    assert table.get("c", 18) == {} and table.stats("c", 18) == (0, 0)
    assert table.statistics().channels == 0


def test_presence_user_change_on_refresh_moves_count() -> None:
    table = PresenceTable()
    table.add("c", "1", info("u", "1"), ttl=10, now=0)
    table.add("c", "1", info("v", "1"), ttl=10, now=0)
    assert table.stats("c", 0) == (1, 1)
    assert table.get("c", 0)["1"].user == "v"


def test_presence_rejects_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        PresenceTable().add("c", "1", info("u", "1"), ttl=0, now=0)


# -- IdempotencyCache --------------------------------------------------------------------


def test_idempotency_cache_returns_until_ttl_then_forgets() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache()
    cache.put("c", "k", 42, ttl=5, now=0)
    assert cache.get("c", "k", 4.9) == 42
    assert cache.get("other", "k", 0) is None
    assert cache.get("c", "k", 5) is None
    assert cache.sweep(5) == 1 and len(cache) == 0


def test_idempotency_cache_reput_survives_stale_heap_entry() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache()
    cache.put("c", "k", 1, ttl=5, now=0)
    cache.put("c", "k", 2, ttl=5, now=4)
    assert cache.sweep(6) == 0 and cache.get("c", "k", 6) == 2
