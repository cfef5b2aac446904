"""Framings, the unidirectional codec, and the shard's delivery groups: a publication is
encoded once per codec and framed once per delivery, the same bytes for every
subscriber of a group."""

from __future__ import annotations

import json
from typing import Any

import pytest

import broker.shard.actor as shard_actor
from broker.connection.framing import (
    SSE_JSON,
    STREAM_JSON,
    STREAM_PROTOBUF,
    UNI_SSE,
    UNI_STREAM,
    UNI_WS,
    UNI_WS_JOINED,
    WS_JSON,
    WS_PROTOBUF,
    Delivery,
)
from broker.connection.outbox import FlushScheduler, Outbox, new_outbox, ws_frame
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, ProtocolError
from broker.protocol.uni import UNI_JSON_CODEC, decode_connect_request
from broker.shard.actor import ShardActor
from broker.shard.state import ShardState, Subscriber
from broker.types import ClientInfo, Publication
from tests.unit.test_outbox import FakeLoop, FakeTransport


def test_framings_of_one_and_of_several_frames() -> None:
    a, b = b'{"a":1}', b'{"b":2}'
    assert SSE_JSON.framing.one(a) == b'data: {"a":1}\n\n'
    assert SSE_JSON.framing.many([a, b]) == b'data: {"a":1}\n\ndata: {"b":2}\n\n'
    assert STREAM_JSON.framing.one(a) == a + b"\n"
    assert STREAM_JSON.framing.many([a, b]) == a + b"\n" + b + b"\n"
    assert STREAM_PROTOBUF.framing.many([b"\x01x", b"\x01y"]) == b"\x01x\x01y"
    assert WS_JSON.framing.many([a, b]) == ws_frame(a + b"\n" + b, False)
    assert WS_PROTOBUF.framing.one(b"\x01x") == ws_frame(b"\x01x", True)
    assert UNI_WS.framing.many([a, b]) == ws_frame(a, False) + ws_frame(b, False)
    assert UNI_WS_JOINED.framing.many([a, b]) == ws_frame(a + b"\n" + b, False)
    # every framing: several frames are exactly what one write of each would be, or the
    # joined message of the WebSocket framings
    for delivery in (SSE_JSON, STREAM_JSON, UNI_SSE, UNI_STREAM, UNI_WS):
        framing = delivery.framing
        assert framing.many([a, b]) == framing.one(a) + framing.one(b), delivery.name


def test_uni_codec_writes_bare_pushes() -> None:
    pub = Publication(b'{"x":1}', offset=5, info=ClientInfo("u", "c"), tags={"k": "v"})
    bidi = json.loads(JSON_CODEC.encode_publication_push("news", pub))
    uni = json.loads(UNI_JSON_CODEC.encode_publication_push("news", pub))
    assert uni == bidi["push"]
    assert UNI_JSON_CODEC.encode_reply({}) == b"{}"  # the ping
    assert json.loads(UNI_JSON_CODEC.encode_reply({"push": {"connect": {"client": "c"}}})) \
        == {"connect": {"client": "c"}}
    with pytest.raises(ValueError):
        UNI_JSON_CODEC.encode_reply({"id": 1, "ping": {}})
    with pytest.raises(ProtocolError):
        UNI_JSON_CODEC.decode_commands(b'{"id":1}')


def test_connect_request_parsing() -> None:
    assert decode_connect_request("") == {} and decode_connect_request(b"null") == {}
    assert decode_connect_request('{"token":"t","subs":{"c":{"recover":true}}}') == {
        "token": "t", "subs": {"c": {"recover": True}}}
    for bad in ("[1]", "{", '{"token": 5}'):
        with pytest.raises(ProtocolError):
            decode_connect_request(bad)


class Sink:
    """An outbox that records what the shard pushes (the shard calls its class's push)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[bytes, bytes | None]] = []

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        self.pushed.append((frame, wire))


def test_each_group_gets_one_framing_shared_by_all_its_subscribers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = ShardState()
    scheduler = FlushScheduler(FakeLoop())  # type: ignore[arg-type]
    groups: dict[Delivery, list[FakeTransport]] = {}
    for delivery in (SSE_JSON, UNI_SSE, STREAM_JSON, STREAM_PROTOBUF):
        for n in range(3):
            transport = FakeTransport()
            outbox = new_outbox(transport, scheduler,  # type: ignore[arg-type]
                                framing=delivery.framing, binary=delivery.codec.binary,
                                join=delivery.codec.join, max_bytes=1 << 20,
                                on_overflow=lambda: None)
            conn_id = f"{delivery.name}-{n}"
            state.add("c", Subscriber(conn_id, outbox, delivery))
            state.activate("c", conn_id, 0)
            groups.setdefault(delivery, []).append(transport)
    chan = state.channels["c"]
    assert not chan.json and not chan.binary
    assert set(chan.groups) == {(delivery, 0) for delivery in groups}  # 0: no compaction

    encodes: list[Any] = []
    real_encode = shard_actor.encode_publication_push

    def counting(codec: Any, channel: str, pub: Publication, channel_id: int = 0) -> bytes:
        encodes.append(codec)
        return real_encode(codec, channel, pub, channel_id)

    monkeypatch.setattr(shard_actor, "encode_publication_push", counting)
    pub = Publication(b'{"n":1}', offset=1)
    delivered = ShardActor._deliver_groups(chan, "c", pub, scheduler)
    assert delivered == 12
    # one encoding per codec (JSON for SSE and the stream, uni JSON, protobuf) ...
    assert sorted(map(id, encodes)) == sorted(map(id, [JSON_CODEC, UNI_JSON_CODEC,
                                                        PROTOBUF_CODEC]))
    for delivery, transports in groups.items():
        wires = [transport.writes[0] for transport in transports]
        # ... and one framing per group: the very same bytes object for each subscriber
        assert all(wire is wires[0] for wire in wires), delivery.name
        frame = real_encode(delivery.codec, "c", pub)
        assert wires[0] == delivery.framing.one(frame)
    assert groups[UNI_SSE][0].writes[0] == \
        b'data: {"channel":"c","pub":{"data":{"n":1},"offset":1}}\n\n'


def test_removing_the_last_subscriber_of_a_group_drops_the_group() -> None:
    state = ShardState()
    for conn_id in ("a", "b"):
        state.add("c", Subscriber(conn_id, Sink(), SSE_JSON))  # type: ignore[arg-type]
        state.activate("c", conn_id, 0)
    state.add("c", Subscriber("w", Sink(), WS_JSON))  # type: ignore[arg-type]
    state.activate("c", "w", 0)
    chan = state.channels["c"]
    state.remove("c", "a")
    assert list(chan.groups[(SSE_JSON, 0)]) == ["b"]
    state.remove("c", "b")
    assert not chan.groups and list(chan.json) == ["w"]


def test_an_outbox_coalesces_with_its_framing() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        scheduler = FlushScheduler(loop)
        transport = FakeTransport()
        outbox = Outbox(transport, scheduler, binary=False,  # type: ignore[arg-type]
                        join=JSON_CODEC.join, max_bytes=1 << 20, on_overflow=lambda: None,
                        framing=SSE_JSON.framing)
        for n in range(3):
            outbox.push(b'{"n":%d}' % n)
        scheduler.end_tick()
    finally:
        loop.close()
    assert transport.writes == [b'data: {"n":0}\n\n', b'data: {"n":1}\n\ndata: {"n":2}\n\n']
