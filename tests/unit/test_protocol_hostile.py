"""Hostile input: the decoders fail closed with ProtocolError, never another exception and
never a hang, whatever bytes arrive."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import BINARY_PAYLOADS, JSON_PAYLOADS, messages

from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, ProtocolError, command_method
from broker.protocol.protobuf_codec import encode_message, encode_varint

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_protocol_error(codec: Any, frame: Any) -> list[dict[str, Any]] | None:
    try:
        result: list[dict[str, Any]] = codec.decode_commands(frame)
    except ProtocolError:
        return None
    assert isinstance(result, list)
    assert all(type(command) is dict for command in result)
    return result


@FUZZ
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(frame: bytes) -> None:
    decode_or_protocol_error(PROTOBUF_CODEC, frame)
    decode_or_protocol_error(JSON_CODEC, frame)


@FUZZ
@given(st.text(max_size=40))
def test_arbitrary_text_never_raises_anything_but_protocol_error(frame: str) -> None:
    decode_or_protocol_error(JSON_CODEC, frame)
    decode_or_protocol_error(JSON_CODEC, frame.encode())


def _mutate(frame: bytes, data: st.DataObject) -> bytes:
    edit = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    pos = data.draw(st.integers(0, max(len(frame) - 1, 0)))
    if edit == "truncate":
        return frame[:pos]
    if edit == "flip" and frame:
        return frame[:pos] + bytes([frame[pos] ^ data.draw(st.integers(1, 255))]) + frame[pos + 1 :]
    return frame[:pos] + data.draw(st.binary(min_size=1, max_size=4)) + frame[pos:]


@FUZZ
@given(messages("Command", BINARY_PAYLOADS), st.data())
def test_mutated_protobuf_commands_fail_closed(command: dict[str, Any], data: Any) -> None:
    decode_or_protocol_error(PROTOBUF_CODEC, _mutate(PROTOBUF_CODEC.encode_command(command), data))


@FUZZ
@given(messages("Command", JSON_PAYLOADS), st.data())
def test_mutated_json_commands_fail_closed(command: dict[str, Any], data: Any) -> None:
    decode_or_protocol_error(JSON_CODEC, _mutate(JSON_CODEC.encode_command(command), data))


def framed(body: bytes) -> bytes:
    return encode_varint(len(body)) + body


PROTOBUF_CASES = {
    "truncated length prefix": b"\x80",
    "truncated varint": framed(b"\x08\xff"),
    "varint longer than 10 bytes": framed(b"\x08" + b"\xff" * 10 + b"\x01"),
    "varint above 2**64": framed(b"\x08" + b"\xff" * 9 + b"\x02"),
    "length prefix past the end": b"\x05\x08\x01",
    "huge length prefix": encode_varint(2**63) + b"\x08\x01",
    "field length past the end": framed(b"\x2a\x10\x0a\x01x"),
    "wrong wire type for a message": framed(b"\x28\x01"),
    "wrong wire type for a string": framed(b"\x2a\x02\x08\x01"),
    "wrong wire type for an int": framed(b"\x0a\x00"),
    "fixed32 for a known field": framed(b"\x0d\x00\x00\x00\x00"),
    "group wire type": framed(b"\x0b\x0c"),
    "invalid wire type 7": framed(b"\x7f"),
    "field number 0": framed(b"\x00\x01"),
    "invalid UTF-8 in a string": framed(b"\x2a\x04\x0a\x02\xc3\x28"),
    "truncated fixed64 of an unknown field": framed(b"\xa1\x01\x00\x00"),
    "group wire type of an unknown field": framed(b"\xa3\x01"),
    "bad map entry wire type": framed(b"\x22\x04\x1a\x02\x08\x01"),
}


@pytest.mark.parametrize("frame", PROTOBUF_CASES.values(), ids=PROTOBUF_CASES.keys())
def test_malformed_protobuf_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        PROTOBUF_CODEC.decode_commands(frame)


def test_protobuf_nesting_deeper_than_32_is_refused_and_32_is_not() -> None:
    def filter_tree(depth: int) -> dict[str, Any]:
        node: dict[str, Any] = {"op": "leaf"}
        for _ in range(depth):
            node = {"op": "and", "nodes": [node]}
        return node

    # Command(0) -> SubscribeRequest(1) -> FilterNode(2) -> ... nested FilterNodes.
    ok = {"id": 1, "subscribe": {"channel": "c", "tf": filter_tree(29)}}
    assert PROTOBUF_CODEC.decode_commands(PROTOBUF_CODEC.encode_command(ok)) == [ok]
    deep = {"id": 1, "subscribe": {"channel": "c", "tf": filter_tree(40)}}
    with pytest.raises(ProtocolError):
        PROTOBUF_CODEC.decode_commands(PROTOBUF_CODEC.encode_command(deep))
    with pytest.raises(ProtocolError):
        JSON_CODEC.decode_commands(JSON_CODEC.encode_command(deep))


def test_protobuf_text_frames_are_refused() -> None:
    with pytest.raises(ProtocolError):
        PROTOBUF_CODEC.decode_commands("{}")  # type: ignore[arg-type]


def test_protobuf_unknown_command_fields_are_kept_as_unknown_methods() -> None:
    frame = framed(encode_message("Command", {"id": 7}) + b"\x82\x01\x02\x08\x01")  # field 16
    [command] = PROTOBUF_CODEC.decode_commands(frame)
    assert command["id"] == 7
    assert command_method(command) == "unknown_16"
    nested = framed(b"\x2a\x05\x0a\x01c\x78\x01")  # subscribe {channel: "c", 15: 1}
    assert PROTOBUF_CODEC.decode_commands(nested) == [{"subscribe": {"channel": "c"}}]


JSON_CASES = {
    "invalid JSON": b'{"id": 1,',
    "invalid UTF-8": b'{"id":1,"connect":{"token":"\xff"}}',
    "array command": b"[1, 2]",
    "number command": b"1",
    "string command": b'"connect"',
    "null command": b"null",
    "string id": b'{"id":"1","connect":{}}',
    "float id": b'{"id":1.5,"connect":{}}',
    "bool id": b'{"id":true,"connect":{}}',
    "negative id": b'{"id":-1,"connect":{}}',
    "id above uint32": b'{"id":4294967296,"connect":{}}',
    "method is a number": b'{"id":1,"connect":5}',
    "method is a list": b'{"id":1,"subscribe":[]}',
    "channel is a number": b'{"id":1,"subscribe":{"channel":5}}',
    "offset is negative": b'{"id":1,"subscribe":{"channel":"c","offset":-1}}',
    "recover is a string": b'{"id":1,"subscribe":{"recover":"yes"}}',
    "subs is a list": b'{"id":1,"connect":{"subs":[]}}',
    "headers value is a number": b'{"id":1,"connect":{"headers":{"a":1}}}',
    "limit above int32": b'{"id":1,"history":{"limit":2147483648}}',
    "second line broken": b'{"id":1,"ping":{}}\n{"id":2,',
    "payload nested beyond what can be re-dumped": b'{"id":1,"publish":{"data":'
    + b"[" * 300
    + b"]" * 300
    + b"}}",
    "JSON nested beyond the parser limit": b'{"id":1,"publish":{"data":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}}",
}


@pytest.mark.parametrize("frame", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_malformed_json_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        JSON_CODEC.decode_commands(frame)


def test_json_unknown_methods_are_kept_and_unknown_fields_dropped() -> None:
    [command] = JSON_CODEC.decode_commands(b'{"id":4,"frobnicate":{"x":1}}')
    assert command == {"id": 4, "frobnicate": {"x": 1}}
    assert command_method(command) == "frobnicate"
    [sub] = JSON_CODEC.decode_commands(b'{"id":5,"subscribe":{"channel":"c","future":1}}')
    assert sub == {"id": 5, "subscribe": {"channel": "c"}}


def test_json_blank_lines_and_nulls_are_nothing() -> None:
    assert JSON_CODEC.decode_commands(b"") == []
    assert JSON_CODEC.decode_commands(b'\n{"id":1,"ping":{}}\n\n') == [{"id": 1, "ping": {}}]
    frame = b'{"id":2,"subscribe":{"channel":"c","epoch":null}}'
    assert JSON_CODEC.decode_commands(frame) == [{"id": 2, "subscribe": {"channel": "c"}}]


def test_json_payloads_are_compacted_and_may_be_null() -> None:
    frame = b'{"id":1,"publish":{"channel":"c","data": { "a" : [1, 2] }}}\n'
    frame += b'{"id":2,"rpc":{"data":null}}'
    first, second = JSON_CODEC.decode_commands(frame)
    assert first["publish"]["data"] == b'{"a":[1,2]}'
    assert second["rpc"]["data"] == b"null"
    assert orjson.loads(JSON_CODEC.encode_reply({"id": 2, "rpc": {"data": b"null"}})) == {
        "id": 2,
        "rpc": {"data": None},
    }


@pytest.mark.parametrize("codec", [JSON_CODEC, PROTOBUF_CODEC], ids=["json", "protobuf"])
def test_encoders_refuse_dicts_outside_the_schema(codec: Any) -> None:
    with pytest.raises(ValueError):
        codec.encode_reply({"id": 1, "nonsense": {}})
    with pytest.raises(TypeError):
        codec.encode_reply({"id": 1, "rpc": {"data": "not bytes"}})
    with pytest.raises(TypeError):
        codec.encode_reply({"id": "1"})
    with pytest.raises(ValueError):
        codec.encode_reply({"id": -1})
