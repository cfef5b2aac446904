"""Pure parts of the Redis engine, no server and no event loop: formats, routing, backoff,
position tracking."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.engine.redis_codec import (
    DecodeError,
    KeyScheme,
    decode_body,
    decode_control,
    decode_info,
    decode_published,
    encode_body,
    encode_control,
    encode_info,
    jump_hash,
    node_marker,
    node_of_body,
    publication_from_stream,
    publication_of,
    sent_by,
)
from broker.engine.redis_link import Address, parse_address
from broker.engine.redis_pubsub import Backoff, PositionTracker, Verdict
from broker.types import ClientInfo, Publication, StreamPosition

infos = st.none() | st.builds(
    ClientInfo, st.text(), st.text(), st.none() | st.binary(), st.none() | st.binary()
)
tags = st.none() | st.dictionaries(st.text(), st.text(), min_size=1, max_size=5)


@given(st.text(), st.integers(0, 2**63 - 1), st.binary(), infos, tags)
def test_body_round_trips(
    node: str, time_ms: int, data: bytes, info: ClientInfo | None, tag: dict[str, str] | None
) -> None:
    body = encode_body(node, time_ms, data, info, tag)
    decoded = decode_body(body)
    assert (decoded.node, decoded.time, decoded.data, decoded.info, decoded.tags) == (
        node, time_ms, data, info, tag)
    assert node_of_body(body) == node
    assert sent_by(b"p0::" + body, 4, node_marker(node))
    assert not sent_by(b"p0::" + body, 4, node_marker(node + "x"))
    assert not sent_by(b"p0::" + body, 4, node_marker(node[:-1])) or node == ""


def test_published_message_as_the_script_builds_it() -> None:
    info = ClientInfo("u", "c", b'{"a":1}')
    body = encode_body("n1", 1234, b'{"x":":"}', info, {"k": "v"})
    pub, position, node = publication_of(b"p17:abc:" + body)
    assert pub == Publication(b'{"x":":"}', 17, info, {"k": "v"}, 1234)
    assert (position, node) == (StreamPosition(17, "abc"), "n1")
    assert publication_of(b"p0::" + body)[1] is None  # no history: no position
    assert decode_published(b"p3:e:" + body) == (3, "e", 5)
    assert publication_from_stream(b"17-0", body) == (pub, "n1")


@pytest.mark.parametrize("bad", [b"", b"x1:e:", b"p1", b"pq:e:", b"p1:e"])
def test_bad_published_messages_raise_decode_error(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_published(bad)


def test_truncated_body_and_control_raise_decode_error() -> None:
    body = encode_body("n", 1, b"data", None, None)
    with pytest.raises(DecodeError):
        decode_body(body[:-1])
    with pytest.raises(DecodeError):
        decode_control(b"c\x00\x09abc")
    with pytest.raises(DecodeError):
        decode_info(encode_body("n", 1, b"", None, None))


def test_control_and_info_round_trip() -> None:
    assert decode_control(encode_control("node-1", b"\x00ctl")) == ("node-1", b"\x00ctl")
    info = ClientInfo("u", "c", None, b"{}")
    assert decode_info(encode_info(info)) == info


def test_keys_share_one_hash_tag_and_map_back() -> None:
    keys = KeyScheme("p")
    names = [keys.meta("a:b"), keys.stream("a:b"), keys.idempotency("a:b", "k"),
             keys.presence_info("a:b"), keys.presence_expiry("a:b"), keys.pubsub("a:b")]
    assert all("{a:b}" in name for name in names)
    assert keys.channel_of(keys.pubsub("a:b")) == "a:b"
    assert keys.channel_of(keys.control) is None
    assert keys.channel_of("other.ch.{x}") is None


def test_jump_hash_is_balanced_and_moves_little_when_growing() -> None:
    keys = [zlib.crc32(b"channel-%d" % i) for i in range(4000)]
    spread = Counter(jump_hash(k, 4) for k in keys)
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 800
    moved = sum(jump_hash(k, 4) != jump_hash(k, 5) for k in keys)
    assert moved < len(keys) * 0.3  # about 1/5 move, never a reshuffle
    assert all(jump_hash(k, 5) == 4 for k in keys if jump_hash(k, 4) != jump_hash(k, 5))
    with pytest.raises(ValueError):
        jump_hash(1, 0)


def test_parse_address_forms() -> None:
    assert parse_address("10.0.0.1:7000", db=2, user="u", password="p") == Address(
        "10.0.0.1", 7000, 2, "u", "p")
    assert parse_address("redis://x:pw@h:6380/3") == Address("h", 6380, 3, "x", "pw")
    with pytest.raises(ValueError, match="host:port"):
        parse_address("nohost")


def test_backoff_grows_with_jitter_up_to_cap_and_resets() -> None:
    low = Backoff(0.1, 1.0, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    high = Backoff(0.1, 1.0, rand=lambda: 1.0)
    assert [high.next_delay() for _ in range(3)] == [0.1, 0.2, 0.4]
    high.reset()
    assert high.next_delay() == 0.1
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_tracker_verdicts() -> None:
    tracker = PositionTracker()
    assert tracker.judge("ch", 5, "e") is Verdict.DELIVER  # unknown channel
    tracker.set("ch", StreamPosition(4, "e"))
    assert tracker.judge("ch", 0, "") is Verdict.DELIVER  # no history
    assert tracker.judge("ch", 5, "e") is Verdict.DELIVER
    assert tracker.judge("ch", 4, "e") is Verdict.DUPLICATE
    assert tracker.judge("ch", 7, "e") is Verdict.GAP
    assert tracker.judge("ch", 1, "other") is Verdict.NEW_EPOCH
    tracker.set("new", StreamPosition(0, ""))  # no stream at the baseline
    assert tracker.judge("new", 1, "x") is Verdict.DELIVER
    assert tracker.judge("new", 2, "x") is Verdict.GAP
    tracker.forget("ch")
    assert "ch" not in tracker and len(tracker) == 1


async def test_catch_up_skips_what_the_live_path_delivered_during_the_read() -> None:
    """Regression: a live publication handled while the stream was being read was
    delivered a second time by the catch-up (found by tests/cluster/test_faults.py)."""
    from broker.engine.redis_codec import KeyScheme
    from broker.engine.redis_receive import Receiver
    from broker.types import Publication, StreamPosition

    got: list[int] = []

    async def read(channel: str, since: StreamPosition | None) -> object:
        receiver.tracker.set(channel, StreamPosition(2, "e"))  # live path delivered 2
        got.append(2)
        pubs = [(Publication(b"2", 2), "other"), (Publication(b"3", 3), "other")]
        return pubs, StreamPosition(3, "e"), 0

    receiver = Receiver(None, KeyScheme("t"), "me", read, io_timeout=1.0,  # type: ignore[arg-type]
                        backoff=lambda: None)  # type: ignore[arg-type,return-value]
    receiver.handlers.publication = lambda channel, pub, position: got.append(pub.offset)
    receiver.channels.add("c")
    receiver.tracker.set("c", StreamPosition(1, "e"))
    await receiver.catch_up("c")
    assert got == [2, 3]
    assert receiver.tracker.get("c") == StreamPosition(3, "e")
