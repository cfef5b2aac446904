"""Protobuf wire format of the client protocol (subprotocol ``centrifuge-protobuf``).

A WebSocket message holds varint-length-delimited ``Command``s (client to server) or
``Reply``s (server to client). The encoder and decoder are hand-written from the schema in
``base.py`` so the product needs no protobuf runtime: proto3 semantics (zero values are not
written, a message field that is present is written even when empty, maps are repeated
entry messages, unknown fields of nested messages are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from broker.protocol.base import (
    BOOL,
    BYTES,
    INT_RANGES,
    MAP,
    MESSAGE,
    MESSAGES,
    REPEATED,
    STRING,
    FieldSpec,
    MessageSpec,
    ProtocolError,
)
from broker.protocol.protobuf_decode import (
    _KEY_SPEC,
    _LEN,
    _U64_MASK,
    _VARINT,
    _decode,
    _split_frames,
    decode_message,
)

if TYPE_CHECKING:
    from broker.types import ClientInfo, Publication

__all__ = ["PROTOBUF_CODEC", "ProtobufCodec", "decode_message", "encode_message"]

_SMALL: Final = [bytes((i,)) for i in range(128)]


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128. Negative values are written as their 64-bit two's complement."""
    if 0 <= value < 128:
        return _SMALL[value]
    if 0 < value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= _U64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_value(spec: FieldSpec, value: Any) -> bytes:
    """Value bytes of a length-delimited field (without tag and length)."""
    kind = spec.kind
    if kind == STRING:
        if type(value) is not str:
            raise TypeError(f"field {spec.name!r} must be str, not {type(value).__name__}")
        return value.encode()
    if kind == BYTES:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"field {spec.name!r} must be bytes, not {type(value).__name__}")
        return bytes(value)
    if type(value) is not dict:
        raise TypeError(f"field {spec.name!r} must be a dict, not {type(value).__name__}")
    assert spec.message is not None
    return _encode(MESSAGES[spec.message], value)


def _append_len(out: bytearray, key: bytes, payload: bytes) -> None:
    out += key
    out += encode_varint(len(payload))
    out += payload


def _encode(msg: MessageSpec, obj: dict[str, Any]) -> bytes:
    """Error handling: a key outside the schema -> ValueError; a wrong type -> TypeError."""
    out = bytearray()
    by_name = msg.by_name
    for name, value in obj.items():
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"{msg.name} has no field {name!r}")
        if value is None:
            continue
        if spec.kind == MESSAGE and spec.label == 0:  # presence matters even when empty
            _append_len(out, _TAGS[spec.number, _LEN], _encode_value(spec, value))
        elif not value:
            continue  # proto3: zero values are not written
        elif spec.label == REPEATED:
            key = _TAGS[spec.number, _LEN]
            for item in value:
                _append_len(out, key, _encode_value(spec, item))
        elif spec.label == MAP:
            key = _TAGS[spec.number, _LEN]
            for map_key, item in value.items():
                entry = _encode_field_bytes(_KEY_SPEC, 1, map_key)
                _append_len(out, key, entry + _encode_field_bytes(spec, 2, item))
        elif spec.kind in (STRING, BYTES):
            _append_len(out, _TAGS[spec.number, _LEN], _encode_value(spec, value))
        else:
            out += _TAGS[spec.number, _VARINT]
            out += encode_varint(_check_int(spec, value))
    return bytes(out)


def _encode_field_bytes(spec: FieldSpec, number: int, value: Any) -> bytes:
    payload = _encode_value(spec, value)
    return _TAGS[number, _LEN] + encode_varint(len(payload)) + payload


def _check_int(spec: FieldSpec, value: Any) -> int:
    if spec.kind == BOOL:
        if type(value) is not bool:
            raise TypeError(f"field {spec.name!r} must be bool, not {type(value).__name__}")
        return 1
    if type(value) is not int:
        raise TypeError(f"field {spec.name!r} must be int, not {type(value).__name__}")
    low, high = INT_RANGES[spec.kind]
    if not low <= value <= high:
        raise ValueError(f"field {spec.name!r} out of range: {value}")
    return value


_TAGS: Final = {
    (number, wire): encode_varint(number << 3 | wire)
    for number in {f.number for m in MESSAGES.values() for f in m.fields} | {1, 2}
    for wire in (_VARINT, _LEN)
}


def encode_message(name: str, obj: dict[str, Any]) -> bytes:
    """Encode one message of the schema, without a length prefix."""
    return _encode(MESSAGES[name], obj)


def _ld(key: bytes, value: bytes) -> bytes:
    """A length-delimited field: key, length, value."""
    n = len(value)
    return key + (_SMALL[n] if n < 128 else encode_varint(n)) + value


@lru_cache(maxsize=4096)
def _client_info(info: ClientInfo) -> bytes:
    """ClientInfo bytes, cached: the same few publishers send most publications."""
    out = _ld(b"\x0a", info.user.encode()) if info.user else b""
    if info.client:
        out += _ld(b"\x12", info.client.encode())
    if info.conn_info:
        out += _ld(b"\x1a", info.conn_info)
    if info.chan_info:
        out += _ld(b"\x22", info.chan_info)
    return out


def _publication_push(channel: str, pub: Publication, channel_id: int = 0) -> bytes:
    """The push Reply of ``pub``, written by hand: this runs once per publication.

    Must stay byte-identical to ``_encode`` of the same push dict (tested).
    """
    data = pub.data
    body = _ld(b"\x22", data) if data else b""
    if pub.info is not None:
        body += _ld(b"\x2a", _client_info(pub.info))
    offset = pub.offset
    if offset:
        body += b"\x30" + (_SMALL[offset] if offset < 128 else encode_varint(offset))
    if pub.tags:
        for key, value in pub.tags.items():
            body += _ld(b"\x3a", _ld(b"\x0a", key.encode()) + _ld(b"\x12", value.encode()))
    if channel_id:  # Push.id (field 1, int64) in place of the channel name
        push = b"\x08" + encode_varint(channel_id) + _ld(b"\x22", body)
    elif channel:
        push = _ld(b"\x12", channel.encode()) + _ld(b"\x22", body)
    else:
        push = _ld(b"\x22", body)
    reply = _ld(b"\x22", push)
    return (_SMALL[len(reply)] if len(reply) < 128 else encode_varint(len(reply))) + reply


class ProtobufCodec:
    """The ``centrifuge-protobuf`` codec. Stateless; use the ``PROTOBUF_CODEC`` singleton."""

    name = "protobuf"
    binary = True

    def decode_commands(self, frame: bytes | str) -> list[dict[str, Any]]:
        """Error handling: ProtocolError for any malformed frame, never another exception."""
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise ProtocolError("protobuf frames must be binary")
        frame = bytes(frame)
        command = MESSAGES["Command"]
        return [_decode(command, frame, start, stop, 0) for start, stop in _split_frames(frame)]

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        body = _encode(MESSAGES["Reply"], reply)
        return encode_varint(len(body)) + body

    def join(self, frames: Sequence[bytes]) -> bytes:
        return b"".join(frames)

    def encode_publication_push(self, channel: str, pub: Publication,
                                channel_id: int = 0) -> bytes:
        return _publication_push(channel, pub, channel_id)

    # The client side, for tests and load generators.
    def encode_command(self, command: dict[str, Any]) -> bytes:
        body = _encode(MESSAGES["Command"], command)
        return encode_varint(len(body)) + body

    def decode_replies(self, frame: bytes) -> list[dict[str, Any]]:
        frame = bytes(frame)
        reply = MESSAGES["Reply"]
        return [_decode(reply, frame, start, stop, 0) for start, stop in _split_frames(frame)]


PROTOBUF_CODEC: Final = ProtobufCodec()
