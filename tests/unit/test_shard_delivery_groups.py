"""Filtered and delta subscribers: their own groups in the shard, and what they are sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from centrifuge.fossil import apply_delta

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.connection.outbox import Outbox
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from broker.shard.actor import ShardActor, delta_push
from broker.shard.filters import compile_filter
from broker.shard.state import ShardState, Subscriber
from broker.types import Publication

DOC = b'{"levels":[' + b",".join(b"[%d,%d]" % (i, i * 3) for i in range(50)) + b"]}"


class Sink:
    """Stands in for an outbox: records the frames pushed to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> None:
    def push(outbox: Any, frame: bytes, *rest: Any) -> None:
        outbox.frames.append(frame)

    monkeypatch.setattr(Outbox, "push", push)


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


@pytest.mark.usefixtures("pushed")
def test_filtered_group_gets_only_matching_publications() -> None:
    state = ShardState()
    sink = live(state, "f", predicate=compile_filter({"key": "k", "cmp": "eq", "val": "v"}))
    chan = state.channels["c"]
    for n, tags in enumerate([{"k": "v"}, {"k": "w"}, None, {"k": "v"}]):
        ShardActor._deliver_filtered(chan, "c", Publication(b"%d" % n, tags=tags))
    assert [p["data"] for p in pubs_of(sink, False)] == [0, 3]


@pytest.mark.usefixtures("pushed")
@pytest.mark.parametrize("binary", [False, True], ids=["json", "protobuf"])
def test_delta_group_gets_full_then_deltas(binary: bool) -> None:
    state = ShardState()
    sink = live(state, "d", binary=binary, delta=True)
    chan = state.channels["c"]
    docs = [DOC.replace(b"[7,21]", b"[7,%d]" % n) for n in range(4)]
    for doc in docs:
        ShardActor._deliver_delta(chan, "c", Publication(doc))
    pubs = pubs_of(sink, binary)
    assert [bool(p.get("delta")) for p in pubs] == [False, True, True, True]
    base = b""
    for pub, doc in zip(pubs, docs, strict=True):
        data = pub["data"] if binary else pub["data"].encode()
        base = apply_delta(base, data) if pub.get("delta") else data
        assert base == doc
    # A newcomer starts from a full publication while the others keep getting deltas.
    late = live(state, "late", binary=binary, delta=True)
    ShardActor._deliver_delta(chan, "c", Publication(docs[0]))
    assert not pubs_of(late, binary)[0].get("delta")
    assert pubs_of(sink, binary)[-1]["delta"] is True


def test_delta_push_wraps_json_data_in_a_string() -> None:
    frame, _ = delta_push("c", Publication(b'{"a":1}', offset=3), None, WS_JSON)
    pub = JSON_CODEC.decode_replies(frame)[0]["push"]["pub"]
    assert json.loads(pub["data"]) == '{"a":1}' and pub["offset"] == 3 and "delta" not in pub
    frame, _ = delta_push("c", Publication(b'{"a":1}'), b"patch", WS_PROTOBUF)
    pub = PROTOBUF_CODEC.decode_replies(frame)[0]["push"]["pub"]
    assert pub["data"] == b"patch" and pub["delta"] is True
