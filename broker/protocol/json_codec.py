"""JSON wire format of the client protocol (the default WebSocket subprotocol).

A WebSocket message holds newline-delimited JSON objects: commands from the client, replies
from the server. Payload fields (every ``bytes`` field of the schema) are raw embedded JSON:
the decoder re-dumps the parsed value to compact bytes, the encoder embeds the bytes
unparsed with ``orjson.Fragment`` -- the broker never parses a payload twice, and a
publication's bytes reach every subscriber untouched. Zero values are omitted on encode, as
Centrifugo's ``omitempty`` does; a message field that is present is written even when empty
(``{"id": 1, "publish": {}}`` is the publish result).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import orjson

from broker.protocol.base import (
    BOOL,
    BYTES,
    INT_RANGES,
    MAX_DEPTH,
    MESSAGE,
    MESSAGES,
    REPEATED,
    SINGLE,
    STRING,
    FieldSpec,
    MessageSpec,
    ProtocolError,
)

if TYPE_CHECKING:
    from broker.types import ClientInfo, Publication

__all__ = ["JSON_CODEC", "JsonCodec", "decode_message", "encode_message"]

_Fragment = orjson.Fragment
_dumps = orjson.dumps
_loads = orjson.loads


_SKIP: Final = object()  # a field's converter: "leave this field out"

# Per message name, field name -> converter (``_compile_decoders``): what
# ``_from_json`` did per field with a chain of kind and label tests, decided once per
# field of the schema instead of on every value (two commands per handshake).
Decoder = Callable[[Any, int], Any]


def _scalar_decoder(spec: FieldSpec) -> Decoder:
    """The check (and conversion) of one value of ``spec``'s kind, as a function."""
    kind, name = spec.kind, spec.name
    if kind == STRING:
        def string(value: Any, depth: int) -> Any:
            if type(value) is not str:
                raise ProtocolError(f"field {name!r} must be a string")
            return value
        return string
    if kind == BYTES:  # raw JSON payload: keep it as compact JSON bytes
        def raw(value: Any, depth: int) -> Any:
            try:
                return _dumps(value)
            except orjson.JSONEncodeError:  # nested deeper than orjson can write back
                raise ProtocolError(f"field {name!r} nested too deeply") from None
        return raw
    if kind == MESSAGE:
        assert spec.message is not None
        message = MESSAGES[spec.message]

        def nested(value: Any, depth: int) -> Any:
            return _from_json(message, value, depth + 1)
        return nested
    if kind == BOOL:
        def boolean(value: Any, depth: int) -> Any:
            if type(value) is not bool:
                raise ProtocolError(f"field {name!r} must be a boolean")
            return value
        return boolean
    low, high = INT_RANGES[kind]

    def integer(value: Any, depth: int) -> Any:
        if type(value) is not int:
            raise ProtocolError(f"field {name!r} must be an integer")
        if not low <= value <= high:
            raise ProtocolError(f"field {name!r} out of range")
        return value
    return integer


def _field_decoder(spec: FieldSpec) -> Decoder:
    """A field's converter: its value checked, or ``_SKIP`` for a null that means "not
    set" (as in Go's decoder) -- except in a payload, raw JSON that may be null."""
    one = _scalar_decoder(spec)
    name, nullable = spec.name, spec.kind == BYTES
    if spec.label == SINGLE:
        if nullable:
            return one

        def single(value: Any, depth: int) -> Any:
            return _SKIP if value is None else one(value, depth)
        return single
    if spec.label == REPEATED:
        def repeated(value: Any, depth: int) -> Any:
            if value is None and not nullable:
                return _SKIP
            if type(value) is not list:
                raise ProtocolError(f"field {name!r} must be an array")
            return [one(item, depth) for item in value]
        return repeated

    def mapping(value: Any, depth: int) -> Any:
        if value is None and not nullable:
            return _SKIP
        if type(value) is not dict:
            raise ProtocolError(f"field {name!r} must be an object")
        return {key: one(item, depth) for key, item in value.items()}
    return mapping


def _from_json(msg: MessageSpec, obj: Any, depth: int, keep_unknown: bool = False) -> Any:
    """Schema-checked copy of a parsed object. Unknown fields are dropped (as upstream
    does), except at the top of a Command, where the broker needs them to answer 104.

    Error handling: a value of the wrong JSON type -> ProtocolError.
    """
    if type(obj) is not dict:
        raise ProtocolError(f"{msg.name} must be a JSON object")
    if depth > MAX_DEPTH:
        raise ProtocolError("messages nested too deeply")
    out: dict[str, Any] = {}
    decoders = _DECODERS[msg.name]
    for key, value in obj.items():
        decode = decoders.get(key)
        if decode is None:
            if keep_unknown:
                out[key] = value
        elif (value := decode(value, depth)) is not _SKIP:
            out[key] = value
    return out


def _top_from_json(msg: MessageSpec, obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = _from_json(msg, obj, 0, keep_unknown=True)
    return result


def _lines(frame: bytes | str) -> list[Any]:
    """Parsed JSON values of the non-blank lines. Raises ProtocolError."""
    if isinstance(frame, memoryview | bytearray):
        frame = bytes(frame)
    sep: Any = "\n" if isinstance(frame, str) else b"\n"
    try:
        if sep not in frame:  # the common case: one command per message
            return [_loads(frame)] if frame.strip() else []
        return [_loads(line) for line in frame.split(sep) if line.strip()]
    except orjson.JSONDecodeError as exc:  # also raised for invalid UTF-8
        raise ProtocolError(f"invalid JSON: {exc}") from None


def decode_message(name: str, data: bytes | str) -> dict[str, Any]:
    """One JSON message of the schema, schema-checked. Raises ProtocolError."""
    try:
        value = _loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    result: dict[str, Any] = _from_json(MESSAGES[name], value, 0)
    return result


Encoder = Callable[[Any], Any]


def _value_encoder(spec: FieldSpec) -> Encoder:
    """The check (and conversion) of one value of ``spec``'s kind, as a function."""
    kind, name = spec.kind, spec.name
    if kind == BYTES:
        def raw(value: Any) -> Any:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"field {name!r} must be bytes, not {type(value).__name__}")
            return _Fragment(bytes(value))
        return raw
    if kind == MESSAGE:
        assert spec.message is not None
        message = MESSAGES[spec.message]

        def nested(value: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"field {name!r} must be a dict, not {type(value).__name__}")
            return _to_json(message, value)
        return nested
    if kind in (STRING, BOOL):
        wanted = str if kind == STRING else bool

        def plain(value: Any) -> Any:
            if type(value) is not wanted:
                raise TypeError(f"field {name!r} must be {wanted.__name__}, "
                                f"not {type(value).__name__}")
            return value
        return plain
    low, high = INT_RANGES[kind]

    def integer(value: Any) -> Any:
        if type(value) is not int:
            raise TypeError(f"field {name!r} must be int, not {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"field {name!r} out of range: {value}")
        return value
    return integer


def _field_encoder(spec: FieldSpec) -> Encoder:
    """A field's converter, or ``_SKIP`` for a zero value (Centrifugo's ``omitempty``;
    a present message is written even when empty)."""
    one = _value_encoder(spec)
    if spec.label == SINGLE:
        if spec.kind == MESSAGE:
            return one

        def single(value: Any) -> Any:
            return one(value) if value else _SKIP
        return single
    if spec.label == REPEATED:
        def repeated(value: Any) -> Any:
            return [one(item) for item in value] if value else _SKIP
        return repeated

    def mapping(value: Any) -> Any:
        return {_map_key(key): one(item) for key, item in value.items()} if value else _SKIP
    return mapping


def _to_json(msg: MessageSpec, obj: dict[str, Any]) -> dict[str, Any]:
    """A dict orjson can dump as the wire JSON of ``obj``.

    Error handling: a key outside the schema -> ValueError; a wrong type -> TypeError.
    """
    out: dict[str, Any] = {}
    encoders = _ENCODERS[msg.name]
    for name, value in obj.items():
        encode = encoders.get(name)
        if encode is None:
            raise ValueError(f"{msg.name} has no field {name!r}")
        if value is not None and (value := encode(value)) is not _SKIP:
            out[name] = value
    return out


def _map_key(key: Any) -> str:
    if type(key) is not str:
        raise TypeError(f"map keys must be str, not {type(key).__name__}")
    return key


_DECODERS: Final = {name: {spec.name: _field_decoder(spec) for spec in msg.fields}
                    for name, msg in MESSAGES.items()}
_ENCODERS: Final = {name: {spec.name: _field_encoder(spec) for spec in msg.fields}
                    for name, msg in MESSAGES.items()}


def encode_message(name: str, obj: dict[str, Any]) -> bytes:
    """One message of the schema as compact JSON."""
    return _dumps(_to_json(MESSAGES[name], obj))


@lru_cache(maxsize=4096)
def _client_info_json(info: ClientInfo) -> bytes:
    """ClientInfo as JSON, cached: the same few publishers send most publications."""
    out: dict[str, Any] = {}
    if info.user:
        out["user"] = info.user
    if info.client:
        out["client"] = info.client
    if info.conn_info:
        out["conn_info"] = _Fragment(info.conn_info)
    if info.chan_info:
        out["chan_info"] = _Fragment(info.chan_info)
    return _dumps(out)


class JsonCodec:
    """The JSON codec. Stateless; use the ``JSON_CODEC`` singleton."""

    name = "json"
    binary = False

    def decode_commands(self, frame: bytes | str) -> list[dict[str, Any]]:
        """Commands of one message; ``str`` (a text WebSocket message) is accepted too.

        Error handling: invalid JSON or UTF-8, a command that is not an object, an ``id``
        that is not a uint32, a method value that is not an object, a field of the wrong
        type -> ProtocolError. An unknown method is kept under its key (see
        ``command_method``), not an error.
        """
        command = MESSAGES["Command"]
        return [_top_from_json(command, value) for value in _lines(frame)]

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        return _dumps(_to_json(MESSAGES["Reply"], reply))

    def join(self, frames: Sequence[bytes]) -> bytes:
        return b"\n".join(frames)

    def encode_publication_push(self, channel: str, pub: Publication,
                                channel_id: int = 0) -> bytes:
        """Written by hand around pre-dumped pieces: this runs once per publication."""
        if channel_id:
            parts = [b'{"push":{"id":', str(channel_id).encode(), b',"pub":{']
        elif channel:
            parts = [b'{"push":{"channel":', _dumps(channel), b',"pub":{']
        else:
            parts = [b'{"push":{"pub":{']
        sep = b""
        if pub.data:
            parts += (b'"data":', pub.data)
            sep = b","
        if pub.info is not None:
            parts += (sep, b'"info":', _client_info_json(pub.info))
            sep = b","
        if pub.offset:
            parts += (sep, b'"offset":', str(pub.offset).encode())
            sep = b","
        if pub.tags:
            parts += (sep, b'"tags":', _dumps(pub.tags))
        parts.append(b"}}}")
        return b"".join(parts)

    # The client side, for tests and load generators.
    def encode_command(self, command: dict[str, Any]) -> bytes:
        return _dumps(_to_json(MESSAGES["Command"], command))

    def decode_replies(self, frame: bytes | str) -> list[dict[str, Any]]:
        reply = MESSAGES["Reply"]
        return [_top_from_json(reply, value) for value in _lines(frame)]


JSON_CODEC: Final = JsonCodec()
