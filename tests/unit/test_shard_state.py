"""Shard state: pending subscribers buffer, activation hands back exactly what is missing."""

from __future__ import annotations

from typing import Any

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.shard.state import ShardState, Subscriber
from broker.types import Publication


def sub(conn_id: str, binary: bool = False, join_leave: bool = False) -> Subscriber:
    outbox: Any = object()
    return Subscriber(conn_id, outbox, WS_PROTOBUF if binary else WS_JSON, join_leave)


def test_first_subscriber_creates_the_channel_and_last_removes_it() -> None:
    state = ShardState()
    assert state.add("chat", sub("a")) is True
    assert state.add("chat", sub("b")) is False
    assert state.remove("chat", "a") is False
    assert state.remove("chat", "b") is True
    assert "chat" not in state.channels


def test_pending_subscriber_gets_buffered_publications_above_its_offset() -> None:
    state = ShardState()
    state.add("chat", sub("a"))
    chan = state.channels["chat"]
    for offset in (4, 5, 6):
        state.buffer(chan, Publication(b"{}", offset))
    missing = state.activate("chat", "a", after_offset=5)
    assert [p.offset for p in missing] == [6]
    assert "a" in chan.json and not chan.pending


def test_offsetless_publications_are_all_handed_back() -> None:
    state = ShardState()
    state.add("chat", sub("a", binary=True))
    state.buffer(state.channels["chat"], Publication(b"1"))
    assert len(state.activate("chat", "a", 0)) == 1
    assert "a" in state.channels["chat"].binary


def test_join_leave_targets_are_live_subscribers_that_asked() -> None:
    state = ShardState()
    state.add("chat", sub("a", join_leave=True))
    state.add("chat", sub("b", join_leave=False))
    assert state.join_leave_targets("chat") == []  # still pending
    state.activate("chat", "a", 0)
    state.activate("chat", "b", 0)
    assert [s.conn_id for s in state.join_leave_targets("chat")] == ["a"]


def test_resubscribe_replaces_the_previous_entry() -> None:
    state = ShardState()
    state.add("chat", sub("a"))
    state.activate("chat", "a", 0)
    state.add("chat", sub("a", binary=True))
    chan = state.channels["chat"]
    assert "a" not in chan.json and "a" in chan.pending
    assert state.subscriber_count() == 1
