"""The schema against the reference descriptor, and the codecs against what the official
Python SDK (centrifuge-python) actually sends and parses."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from centrifuge.codecs import _JsonCodec, _ProtobufCodec
from centrifuge.protocol import client_pb2
from google.protobuf.descriptor import FieldDescriptor

from broker.protocol import (
    JSON_CODEC,
    PROTOBUF_CODEC,
    PROTOBUF_SUBPROTOCOL,
    codec_for_subprotocol,
)
from broker.protocol.base import (
    BOOL,
    BYTES,
    INT32,
    INT64,
    MAP,
    MESSAGE,
    MESSAGES,
    REPEATED,
    SINGLE,
    STRING,
    UINT32,
    UINT64,
)

PB_KINDS = {
    FieldDescriptor.TYPE_STRING: STRING,
    FieldDescriptor.TYPE_BYTES: BYTES,
    FieldDescriptor.TYPE_BOOL: BOOL,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_MESSAGE: MESSAGE,
}


def reference_fields(name: str) -> set[tuple[str, int, int, int, str | None]]:
    fields = set()
    for fd in client_pb2.DESCRIPTOR.message_types_by_name[name].fields:
        kind, label, message = PB_KINDS[fd.type], SINGLE, None
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            value = mt.fields_by_name["value"]
            kind, label = PB_KINDS[value.type], MAP
            message = value.message_type.name if value.message_type else None
        elif mt is not None:
            message = mt.name
        if fd.is_repeated and label != MAP:
            label = REPEATED
        fields.add((fd.name, fd.number, kind, label, message))
    return fields


@pytest.mark.parametrize("name", MESSAGES)
def test_schema_matches_the_reference_descriptor(name: str) -> None:
    mine = {(f.name, f.number, f.kind, f.label, f.message) for f in MESSAGES[name].fields}
    assert mine == reference_fields(name)


def test_schema_covers_every_message_reachable_from_command_and_reply() -> None:
    seen: set[str] = set()
    todo = ["Command", "Reply"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [m for *_, m in reference_fields(name) if m is not None]
    assert seen <= set(MESSAGES)


def test_subprotocol_selects_the_codec() -> None:
    assert codec_for_subprotocol(PROTOBUF_SUBPROTOCOL) is PROTOBUF_CODEC
    assert codec_for_subprotocol(None) is JSON_CODEC
    assert codec_for_subprotocol("centrifuge-json") is JSON_CODEC
    assert (PROTOBUF_CODEC.name, PROTOBUF_CODEC.binary) == ("protobuf", True)
    assert (JSON_CODEC.name, JSON_CODEC.binary) == ("json", False)


def sdk_commands(encode_data: Any) -> list[dict[str, Any]]:
    """Commands shaped exactly as centrifuge-python's client builds them."""
    sub = {"channel": "chat", "recover": True, "offset": 5, "epoch": "ep", "join_leave": True}
    return [
        {
            "id": 1,
            "connect": {
                "token": "t",
                "data": encode_data({"a": 1}),
                "name": "python",
                "subs": {"srv": {"recover": True, "offset": 3, "epoch": "e"}},
            },
        },
        {"id": 2, "subscribe": sub},
        {"id": 3, "publish": {"channel": "chat", "data": encode_data({"m": "hi"})}},
        {"id": 4, "rpc": {"method": "sum", "data": encode_data([1, 2])}},
        {
            "id": 5,
            "history": {
                "channel": "chat",
                "limit": 10,
                "reverse": True,
                "since": {"offset": 2, "epoch": "ep"},
            },
        },
        {"send": {"data": encode_data("x")}},
        {},
    ]


def test_json_decodes_what_the_python_sdk_sends() -> None:
    frame = _JsonCodec.encode_commands(sdk_commands(lambda v: v)).encode()
    decoded = JSON_CODEC.decode_commands(frame)
    assert decoded[0]["connect"]["data"] == b'{"a":1}'
    assert decoded[0]["connect"]["subs"] == {"srv": {"recover": True, "offset": 3, "epoch": "e"}}
    assert decoded[1]["subscribe"]["join_leave"] is True
    assert decoded[3]["rpc"] == {"method": "sum", "data": b"[1,2]"}
    assert decoded[4]["history"]["since"] == {"offset": 2, "epoch": "ep"}
    assert decoded[5] == {"send": {"data": b'"x"'}}
    assert decoded[6] == {}


def test_protobuf_decodes_what_the_python_sdk_sends() -> None:
    raw = {"a": 1}, {"m": "hi"}, [1, 2], "x"
    payloads = {repr(v): f"payload-{i}".encode() for i, v in enumerate(raw)}
    frame = _ProtobufCodec.encode_commands(
        sdk_commands(lambda v: base64.b64encode(payloads[repr(v)]))
    )
    decoded = PROTOBUF_CODEC.decode_commands(frame)
    assert decoded[0]["connect"]["data"] == b"payload-0"
    assert decoded[0]["connect"]["subs"]["srv"] == {"recover": True, "offset": 3, "epoch": "e"}
    assert decoded[2]["publish"] == {"channel": "chat", "data": b"payload-1"}
    assert decoded[4]["history"] == {
        "channel": "chat",
        "limit": 10,
        "reverse": True,
        "since": {"offset": 2, "epoch": "ep"},
    }
    assert decoded[6] == {}


REPLIES: list[dict[str, Any]] = [
    {
        "id": 1,
        "connect": {
            "client": "c1",
            "version": "0.1",
            "ping": 25,
            "pong": True,
            "subs": {"srv": {"recoverable": True, "epoch": "e", "offset": 7}},
        },
    },
    {
        "id": 2,
        "subscribe": {
            "recoverable": True,
            "epoch": "ep",
            "offset": 9,
            "recovered": True,
            "was_recovering": True,
            "positioned": True,
            "publications": [{"data": b'{"n":1}', "offset": 9}],
        },
    },
    {"id": 3, "error": {"code": 103, "message": "permission denied"}},
    {
        "push": {
            "channel": "chat",
            "join": {"info": {"user": "u", "client": "c", "conn_info": b'{"k":"v"}'}},
        }
    },
    {"push": {"channel": "chat", "unsubscribe": {"code": 2000, "reason": "server"}}},
    {"push": {"disconnect": {"code": 3001, "reason": "shutdown", "reconnect": True}}},
    {"id": 4, "presence": {"presence": {"c": {"user": "u", "client": "c"}}}},
    {"id": 5, "presence_stats": {"num_clients": 2, "num_users": 1}},
    {},
]


def test_the_python_sdk_parses_our_json_replies() -> None:
    frame = JSON_CODEC.join([JSON_CODEC.encode_reply(r) for r in REPLIES])
    parsed = _JsonCodec.decode_replies(frame.decode())
    assert parsed[1]["subscribe"]["publications"] == [{"data": {"n": 1}, "offset": 9}]
    assert parsed[2] == {"id": 3, "error": {"code": 103, "message": "permission denied"}}
    assert parsed[3]["push"]["join"]["info"]["conn_info"] == {"k": "v"}
    assert parsed[6]["presence"]["presence"]["c"] == {"user": "u", "client": "c"}
    assert parsed[8] == {}


def test_the_python_sdk_parses_our_protobuf_replies() -> None:
    frame = PROTOBUF_CODEC.join([PROTOBUF_CODEC.encode_reply(r) for r in REPLIES])
    parsed = _ProtobufCodec.decode_replies(frame)
    assert len(parsed) == len(REPLIES)
    sub = parsed[1]["subscribe"]
    assert (sub["offset"], sub["was_recovering"], sub["epoch"]) == ("9", True, "ep")
    assert base64.b64decode(sub["publications"][0]["data"]) == b'{"n":1}'
    assert parsed[0]["connect"]["subs"]["srv"]["offset"] == "7"
    assert parsed[4]["push"]["unsubscribe"] == {"code": 2000, "reason": "server"}
    assert parsed[5]["push"]["disconnect"]["reconnect"] is True
    assert parsed[7]["presence_stats"] == {"num_clients": 2, "num_users": 1}
    assert parsed[8] == {}
