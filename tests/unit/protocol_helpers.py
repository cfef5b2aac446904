"""Helpers for the protocol tests: hypothesis strategies built from the schema, and
conversions between schema dicts and the reference ``client_pb2`` messages."""

from __future__ import annotations

from typing import Any

import orjson
from centrifuge.protocol import client_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

from broker.protocol.base import (
    BOOL,
    BYTES,
    INT_RANGES,
    MAP,
    MESSAGE,
    MESSAGES,
    REPEATED,
    SINGLE,
    STRING,
    FieldSpec,
)

MAX_STRATEGY_DEPTH = 4

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
# Payloads as a JSON client sends them (compact JSON) and as a protobuf client does.
JSON_PAYLOADS = json_values.map(orjson.dumps)
BINARY_PAYLOADS = st.binary(max_size=24)


def _scalar(spec: FieldSpec, payloads: st.SearchStrategy[bytes], depth: int) -> Any:
    if spec.kind == STRING:
        return st.text(max_size=12)
    if spec.kind == BYTES:
        return payloads
    if spec.kind == BOOL:
        return st.booleans()
    if spec.kind == MESSAGE:
        assert spec.message is not None
        return messages(spec.message, payloads, depth + 1)
    low, high = INT_RANGES[spec.kind]
    return st.integers(low, high)


def messages(name: str, payloads: st.SearchStrategy[bytes], depth: int = 0) -> Any:
    """Dicts of message ``name``: any subset of its fields, each with a valid value."""
    optional: dict[str, Any] = {}
    for spec in MESSAGES[name].fields:
        if spec.kind == MESSAGE and depth >= MAX_STRATEGY_DEPTH:
            continue
        value = _scalar(spec, payloads, depth)
        if spec.label == REPEATED:
            value = st.lists(value, max_size=3)
        elif spec.label == MAP:
            value = st.dictionaries(st.text(max_size=6), value, max_size=3)
        optional[spec.name] = value
    return st.fixed_dictionaries({}, optional=optional)


def normalize(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as it looks after an encode/decode round trip: zero scalars and empty
    repeated fields are not sent; message fields that are present stay, even empty."""
    out: dict[str, Any] = {}
    msg = MESSAGES[name]
    for key, value in obj.items():
        spec = msg.by_name[key]
        sub = spec.message
        if spec.label == SINGLE:
            if sub is not None:
                out[key] = normalize(sub, value)
            elif value:
                out[key] = value
        elif value and spec.label == REPEATED:
            out[key] = [normalize(sub, v) if sub else v for v in value]
        elif value:
            out[key] = {k: normalize(sub, v) if sub else v for k, v in value.items()}
    return out


def pb_class(name: str) -> type[Message]:
    cls: type[Message] = getattr(client_pb2, name)
    return cls


def pb_to_dict(msg: Message) -> dict[str, Any]:
    """The schema dict of a reference protobuf message (set fields only)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            is_msg = mt.fields_by_name["value"].message_type is not None
            out[fd.name] = {k: pb_to_dict(v) if is_msg else v for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.name] = [pb_to_dict(v) if mt is not None else v for v in value]
        elif mt is not None:
            out[fd.name] = pb_to_dict(value)
        else:
            out[fd.name] = value
    return out


def fill_pb(msg: Message, obj: dict[str, Any]) -> Message:
    """Set ``obj``'s fields on a reference protobuf message; returns ``msg``."""
    for key, value in obj.items():
        fd = msg.DESCRIPTOR.fields_by_name[key]
        mt = fd.message_type
        target = getattr(msg, key)
        if mt is not None and mt.GetOptions().map_entry:
            is_msg = mt.fields_by_name["value"].message_type is not None
            for k, v in value.items():
                if is_msg:
                    target[k].SetInParent()
                    fill_pb(target[k], v)
                else:
                    target[k] = v
        elif fd.is_repeated:
            for item in value:
                if mt is not None:
                    fill_pb(target.add(), item)
                else:
                    target.append(item)
        elif mt is not None:
            target.SetInParent()
            fill_pb(target, value)
        else:
            setattr(msg, key, value)
    return msg


def strip_length_prefix(frame: bytes) -> bytes:
    """The one message of a varint-length-delimited frame (asserts there is exactly one)."""
    size = shift = pos = 0
    while True:
        byte = frame[pos]
        size |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            break
    assert len(frame) - pos == size
    return frame[pos:]
