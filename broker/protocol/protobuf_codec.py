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
    INT32,
    INT64,
    INT_RANGES,
    MAP,
    MAX_DEPTH,
    MESSAGE,
    MESSAGES,
    REPEATED,
    STRING,
    UINT32,
    FieldSpec,
    MessageSpec,
    ProtocolError,
)

if TYPE_CHECKING:
    from broker.types import ClientInfo, Publication

__all__ = ["PROTOBUF_CODEC", "ProtobufCodec", "decode_message", "encode_message"]

_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_U64_MASK: Final = 2**64 - 1
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


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Error handling: truncated, longer than 10 bytes or above 2**64 -> ProtocolError."""
    if pos < end:
        b = buf[pos]
        if b < 0x80:  # the common case: one byte
            return b, pos + 1
    result = 0
    shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result > _U64_MASK:
                raise ProtocolError("varint overflows 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtocolError("varint longer than 10 bytes")
    raise ProtocolError("truncated varint")


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
    """Position after an unknown field's value."""
    if wire == _VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire == _LEN:
        size, pos = _read_varint(buf, pos, end)
        pos += size
    elif wire == _I64:
        pos += 8
    elif wire == _I32:
        pos += 4
    else:  # groups (3, 4) are long deprecated; 6 and 7 do not exist
        raise ProtocolError(f"unsupported wire type {wire}")
    if pos > end:
        raise ProtocolError("field runs past the end of its message")
    return pos


def _scalar_from_varint(spec: FieldSpec, value: int) -> Any:
    kind = spec.kind
    if kind == BOOL:
        return value != 0
    if kind == INT64:
        return value - 2**64 if value >= 2**63 else value
    if kind == INT32:  # negative int32 arrives sign-extended to 64 bits; keep 32 as upstream
        value &= 0xFFFFFFFF
        return value - 2**32 if value >= 2**31 else value
    if kind in (MESSAGE, STRING, BYTES):
        raise ProtocolError(f"field {spec.name!r} must be length-delimited")
    if kind == UINT32:  # upstream (Go) decoders truncate an oversized uint32 the same way
        return value & 0xFFFFFFFF
    return value


def _value_from_bytes(spec: FieldSpec, buf: bytes, start: int, end: int, depth: int) -> Any:
    kind = spec.kind
    if kind == STRING:
        try:
            return buf[start:end].decode()
        except UnicodeDecodeError:
            raise ProtocolError(f"field {spec.name!r} is not valid UTF-8") from None
    if kind == BYTES:
        return buf[start:end]
    if kind == MESSAGE:
        assert spec.message is not None
        return _decode(MESSAGES[spec.message], buf, start, end, depth + 1)
    raise ProtocolError(f"field {spec.name!r} must be a varint")


def _map_entry(spec: FieldSpec, buf: bytes, pos: int, end: int, depth: int) -> tuple[str, Any]:
    key = ""
    value: Any = {} if spec.kind == MESSAGE else ""
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number in (1, 2) and wire != _LEN:
            raise ProtocolError(f"map {spec.name!r}: wrong wire type {wire}")
        if number == 1 or number == 2:
            size, pos = _read_varint(buf, pos, end)
            if pos + size > end:
                raise ProtocolError("map entry runs past the end of its message")
            if number == 1:
                key = _value_from_bytes(_KEY_SPEC, buf, pos, pos + size, depth)
            else:
                value = _value_from_bytes(spec, buf, pos, pos + size, depth)
            pos += size
        elif number == 0:
            raise ProtocolError("field number 0")
        else:
            pos = _skip(buf, pos, end, wire)
    return key, value


_KEY_SPEC: Final = FieldSpec("key", 1, STRING)


def _decode(msg: MessageSpec, buf: bytes, pos: int, end: int, depth: int) -> dict[str, Any]:
    """Error handling: any malformed input -> ProtocolError (nothing else escapes)."""
    if depth > MAX_DEPTH:
        raise ProtocolError("messages nested too deeply")
    out: dict[str, Any] = {}
    by_number = msg.by_number
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        spec = by_number.get(number)
        if spec is None:
            if number == 0:
                raise ProtocolError("field number 0")
            start = pos
            pos = _skip(buf, pos, end, wire)
            if msg.name == "Command":  # keep it: the broker answers "method not found"
                out[f"unknown_{number}"] = buf[start:pos]
            continue
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos, end)
            if spec.label != 0:
                raise ProtocolError(f"field {spec.name!r} must be length-delimited")
            out[spec.name] = _scalar_from_varint(spec, value)
            continue
        if wire != _LEN:
            raise ProtocolError(f"field {spec.name!r}: wrong wire type {wire}")
        size, pos = _read_varint(buf, pos, end)
        stop = pos + size
        if stop > end:
            raise ProtocolError(f"field {spec.name!r} runs past the end of its message")
        if spec.label == REPEATED:
            out.setdefault(spec.name, []).append(_value_from_bytes(spec, buf, pos, stop, depth))
        elif spec.label == MAP:
            key, item = _map_entry(spec, buf, pos, stop, depth)
            out.setdefault(spec.name, {})[key] = item
        else:
            item = _value_from_bytes(spec, buf, pos, stop, depth)
            old = out.get(spec.name)
            if old is not None and spec.message is not None:  # sent twice: merge, as protobuf
                item = _merge(MESSAGES[spec.message], old, item)
            out[spec.name] = item
        pos = stop
    return out


def _merge(msg: MessageSpec, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Protobuf merge: scalars replace, repeated fields append, map entries replace by key,
    message fields merge recursively."""
    for key, value in new.items():
        spec, prev = msg.by_name.get(key), old.get(key)
        if spec is None or prev is None:
            old[key] = value
        elif spec.label == REPEATED:
            prev.extend(value)
        elif spec.label == MAP:
            prev.update(value)
        elif spec.kind == MESSAGE:
            assert spec.message is not None
            _merge(MESSAGES[spec.message], prev, value)
        else:
            old[key] = value
    return old


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """Decode one (not length-prefixed) message of the schema. Raises ProtocolError."""
    return _decode(MESSAGES[name], bytes(data), 0, len(data), 0)


def _split_frames(frame: bytes) -> list[tuple[int, int]]:
    bounds = []
    pos, end = 0, len(frame)
    while pos < end:
        size, pos = _read_varint(frame, pos, end)
        if pos + size > end:
            raise ProtocolError("length prefix runs past the end of the frame")
        bounds.append((pos, pos + size))
        pos += size
    return bounds


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
