"""Protobuf decoding of the client protocol (``centrifuge-protobuf``): varints, the
schema-driven message decoder and the split of a frame into its length-prefixed messages.

Hand-written from the schema in ``base.py`` (no protobuf runtime): proto3 semantics,
unknown fields of nested messages skipped, nesting bounded by ``MAX_DEPTH``. Error
handling: ProtocolError for any malformed input, never another exception. Used by
:mod:`broker.protocol.protobuf_codec`, which re-exports :func:`decode_message`.
"""

from __future__ import annotations

from typing import Any, Final

from broker.protocol.base import (
    BOOL,
    BYTES,
    INT32,
    INT64,
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

_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_U64_MASK: Final = 2**64 - 1


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
