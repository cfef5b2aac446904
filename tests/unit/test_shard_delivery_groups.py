"""Filtered, delta and compacting subscribers: their own groups in the shard, and what
they are sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from centrifuge.fossil import apply_delta

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.connection.outbox import FlushScheduler
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from broker.shard.actor import ShardActor, delta_push
from broker.shard.filters import compile_filter
from broker.shard.state import ShardState, Subscriber
from broker.types import Publication
from tests.unit.test_outbox import FakeLoop

DOC = b'{"levels":[' + b",".join(b"[%d,%d]" % (i, i * 3) for i in range(50)) + b"]}"


class Sink:
    """Stands in for an outbox: records the frames pushed to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        self.frames.append(frame)


def pubs_of(sink: Sink, binary: bool) -> list[dict[str, Any]]:
    """The pushed publications; JSON ``data`` parsed (the codec leaves it raw)."""
    if binary:
        return [PROTOBUF_CODEC.decode_replies(f)[0]["push"]["pub"] for f in sink.frames]
    pubs = [JSON_CODEC.decode_replies(f)[0]["push"]["pub"] for f in sink.frames]
    return [{**p, "data": json.loads(p["data"])} for p in pubs]


def live(state: ShardState, conn_id: str, binary: bool = False, **kw: Any) -> Sink:
    sink = Sink()
    delivery = WS_PROTOBUF if binary else WS_JSON
    state.add("c", Subscriber(conn_id, sink, delivery, **kw))  # type: ignore[arg-type]
    state.activate("c", conn_id, 0)
    return sink


def test_special_subscribers_stay_out_of_the_plain_groups() -> None:
    state = ShardState()
    live(state, "plain")
    live(state, "f", predicate=compile_filter({"key": "k", "cmp": "ex"}))
    live(state, "d", binary=True, delta=True)
    chan = state.channels["c"]
    assert list(chan.json) == ["plain"] and not chan.binary
    assert list(chan.filtered) == ["f"] and list(chan.delta) == ["d"]
    state.remove("c", "f")
    state.remove("c", "d")
    assert not chan.filtered and not chan.delta


def test_filtered_group_gets_only_matching_publications() -> None:
    state = ShardState()
    sink = live(state, "f", predicate=compile_filter({"key": "k", "cmp": "eq", "val": "v"}))
    chan = state.channels["c"]
    for n, tags in enumerate([{"k": "v"}, {"k": "w"}, None, {"k": "v"}]):
        ShardActor._deliver_filtered(chan, "c", Publication(b"%d" % n, tags=tags))
    assert [p["data"] for p in pubs_of(sink, False)] == [0, 3]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "protobuf"])
def test_delta_group_gets_full_then_deltas(binary: bool) -> None:
    state = ShardState()
    sink = live(state, "d", binary=binary, delta=True)
    chan = state.channels["c"]
    docs = [DOC.replace(b"[7,21]", b"[7,%d]" % n) for n in range(4)]
    for doc in docs:
        ShardActor._deliver_delta(chan, "c", Publication(doc, delta=True))
    pubs = pubs_of(sink, binary)
    assert [bool(p.get("delta")) for p in pubs] == [False, True, True, True]
    base = b""
    for pub, doc in zip(pubs, docs, strict=True):
        data = pub["data"] if binary else pub["data"].encode()
        base = apply_delta(base, data) if pub.get("delta") else data
        assert base == doc
    # A newcomer starts from a full publication while the others keep getting deltas.
    late = live(state, "late", binary=binary, delta=True)
    ShardActor._deliver_delta(chan, "c", Publication(docs[0], delta=True))
    assert not pubs_of(late, binary)[0].get("delta")
    assert pubs_of(sink, binary)[-1]["delta"] is True


def test_delta_push_wraps_json_data_in_a_string() -> None:
    frame, _ = delta_push("c", Publication(b'{"a":1}', offset=3), None, WS_JSON)
    pub = JSON_CODEC.decode_replies(frame)[0]["push"]["pub"]
    assert json.loads(pub["data"]) == '{"a":1}' and pub["offset"] == 3 and "delta" not in pub
    frame, _ = delta_push("c", Publication(b'{"a":1}'), b"patch", WS_PROTOBUF)
    pub = PROTOBUF_CODEC.decode_replies(frame)[0]["push"]["pub"]
    assert pub["data"] == b"patch" and pub["delta"] is True


@pytest.mark.parametrize("binary", [False, True], ids=["json", "protobuf"])
def test_only_publications_published_with_delta_go_out_as_deltas(binary: bool) -> None:
    """As Centrifugo: without ``delta_publish`` (or the API's ``delta``) a delta
    subscriber gets publications in full, and each one is the base of the next delta."""
    state = ShardState()
    sink = live(state, "d", binary=binary, delta=True)
    chan = state.channels["c"]
    docs = [DOC.replace(b"[7,21]", b"[7,%d]" % n) for n in range(4)]
    for doc, delta in zip(docs, [False, False, True, False], strict=True):
        ShardActor._deliver_delta(chan, "c", Publication(doc, delta=delta))
    pubs = pubs_of(sink, binary)
    assert [bool(p.get("delta")) for p in pubs] == [False, False, True, False]
    delta = pubs[2]["data"] if binary else pubs[2]["data"].encode()
    assert apply_delta(docs[1], delta) == docs[2]  # against the full one before it


def frames_by_id(sink: Sink, binary: bool) -> list[dict[str, Any]]:
    codec = PROTOBUF_CODEC if binary else JSON_CODEC
    return [codec.decode_replies(f)[0]["push"] for f in sink.frames]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "protobuf"])
def test_compacting_subscribers_share_one_frame_with_the_channel_id(binary: bool) -> None:
    state = ShardState()
    plain = live(state, "plain", binary=binary)
    first = live(state, "a", binary=binary, channel_id=7)
    second = live(state, "b", binary=binary, channel_id=7)
    chan = state.channels["c"]
    assert list(chan.binary if binary else chan.json) == ["plain"]
    groups = chan.groups  # compacting subscribers: one group per (delivery, channel id)
    assert {key[1]: list(group) for key, group in groups.items()} == {7: ["a", "b"]}
    scheduler = FlushScheduler(FakeLoop())  # type: ignore[arg-type]
    assert ShardActor._deliver_groups(chan, "c", Publication(b'{"n":1}', offset=3),
                                      scheduler) == 2
    assert first.frames == second.frames and len(first.frames) == 1  # one frame, shared
    assert first.frames[0] is second.frames[0]
    [push] = frames_by_id(first, binary)
    assert push["id"] == 7 and "channel" not in push and push["pub"]["offset"] == 3
    assert not plain.frames  # the plain loop is _deliver's own; untouched here
    state.remove("c", "a")
    state.remove("c", "b")
    assert not groups  # emptied groups are dropped


def test_compaction_combines_with_deltas_and_filters() -> None:
    state = ShardState()
    delta = live(state, "d", delta=True, channel_id=3)
    filtered = live(state, "f", channel_id=3,
                    predicate=compile_filter({"key": "k", "cmp": "ex"}))
    chan = state.channels["c"]
    ShardActor._deliver_delta(chan, "c", Publication(DOC, delta=True))
    ShardActor._deliver_filtered(chan, "c", Publication(b"1", tags={"k": "v"}))
    for sink in (delta, filtered):
        [push] = frames_by_id(sink, False)
        assert push["id"] == 3 and "channel" not in push
