"""The codec contract and the message schema shared by the JSON and protobuf codecs.

Commands and replies are plain dicts shaped like Centrifugo's JSON client protocol v2
(snake_case field names of ``client.proto``). Payload fields -- every ``bytes`` field of the
schema: ``data``, ``conn_info``, ``chan_info`` -- are ``bytes`` in the dict for both codecs
(raw JSON for JSON clients, opaque bytes for protobuf clients).

The schema below is the subset of centrifugal/protocol ``client.proto`` that the SDKs use,
with the upstream field numbers; ``tests/unit/test_protocol_schema.py`` checks it against
the generated ``client_pb2`` descriptor so the two can never drift apart silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from broker.types import Publication

__all__ = [
    "KNOWN_METHODS",
    "MESSAGES",
    "Codec",
    "FieldSpec",
    "MessageSpec",
    "ProtocolError",
    "command_method",
]

MAX_DEPTH: Final = 32
"""Deepest nesting of messages a decoder accepts (only FilterNode can recurse)."""


class ProtocolError(Exception):
    """A malformed frame: the caller disconnects the client with bad request (3501)."""


class Codec(Protocol):
    """One wire format of the client protocol. Pure functions: no I/O, no state.

    Error handling: ``decode_commands`` raises only ``ProtocolError`` for any input. The
    encoders expect dicts built by the broker; a dict outside the schema (unknown field,
    wrong type) is a programming error and raises ``ValueError`` or ``TypeError``.
    """

    name: str  # "json" | "protobuf"
    binary: bool  # True -> send as WebSocket binary messages

    def decode_commands(self, frame: bytes | str) -> list[dict[str, Any]]:
        """All commands of one WebSocket message, in order."""
        ...

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        """One Reply, ready to be passed to ``join`` with others."""
        ...

    def join(self, frames: Sequence[bytes]) -> bytes:
        """Several encoded replies as one WebSocket message payload."""
        ...

    def encode_publication_push(self, channel: str, pub: Publication,
                                channel_id: int = 0) -> bytes:
        """The publication push Reply for ``channel`` (or, when ``channel_id`` is set,
        for that compaction id instead of the name), encoded like ``encode_reply``."""
        ...


# Field kinds and labels are small ints: the codecs branch on them per field.
STRING: Final = 1
BYTES: Final = 2
BOOL: Final = 3
UINT32: Final = 4
UINT64: Final = 5
INT32: Final = 6
INT64: Final = 7
MESSAGE: Final = 8

SINGLE: Final = 0
REPEATED: Final = 1
MAP: Final = 2  # map<string, kind/message>, a repeated entry message {1: key, 2: value}

_SCALARS: Final = {
    "str": STRING,
    "bytes": BYTES,
    "bool": BOOL,
    "u32": UINT32,
    "u64": UINT64,
    "i32": INT32,
    "i64": INT64,
}

# (min, max) accepted for each integer kind.
INT_RANGES: Final = {
    UINT32: (0, 2**32 - 1),
    UINT64: (0, 2**64 - 1),
    INT32: (-(2**31), 2**31 - 1),
    INT64: (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: for MAP fields ``kind``/``message`` describe the value type."""

    name: str
    number: int
    kind: int
    label: int = SINGLE
    message: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A protobuf message's fields, by name and by number."""

    name: str
    fields: tuple[FieldSpec, ...]
    by_name: dict[str, FieldSpec] = field(default_factory=dict, compare=False)
    by_number: dict[int, FieldSpec] = field(default_factory=dict, compare=False)


# "number name type" per field; type is a scalar name, a message name, "[]T" or "map:T".
_SCHEMA: Final = {
    "Error": "1 code u32; 2 message str; 3 temporary bool",
    "Command": "1 id u32; 4 connect ConnectRequest; 5 subscribe SubscribeRequest;"
    " 6 unsubscribe UnsubscribeRequest; 7 publish PublishRequest; 8 presence PresenceRequest;"
    " 9 presence_stats PresenceStatsRequest; 10 history HistoryRequest; 11 ping PingRequest;"
    " 12 send SendRequest; 13 rpc RPCRequest; 14 refresh RefreshRequest;"
    " 15 sub_refresh SubRefreshRequest",
    "Reply": "1 id u32; 2 error Error; 4 push Push; 5 connect ConnectResult;"
    " 6 subscribe SubscribeResult; 7 unsubscribe UnsubscribeResult; 8 publish PublishResult;"
    " 9 presence PresenceResult; 10 presence_stats PresenceStatsResult;"
    " 11 history HistoryResult; 12 ping PingResult; 13 rpc RPCResult;"
    " 14 refresh RefreshResult; 15 sub_refresh SubRefreshResult",
    "Push": "1 id i64; 2 channel str; 4 pub Publication; 5 join Join; 6 leave Leave;"
    " 7 unsubscribe Unsubscribe; 8 message Message; 9 subscribe Subscribe; 10 connect Connect;"
    " 11 disconnect Disconnect; 12 refresh Refresh",
    "ClientInfo": "1 user str; 2 client str; 3 conn_info bytes; 4 chan_info bytes",
    "Publication": "4 data bytes; 5 info ClientInfo; 6 offset u64; 7 tags map:str;"
    " 8 delta bool; 9 time i64; 10 channel str",
    "Join": "1 info ClientInfo",
    "Leave": "1 info ClientInfo",
    "Unsubscribe": "2 code u32; 3 reason str",
    "Subscribe": "1 recoverable bool; 4 epoch str; 5 offset u64; 6 positioned bool; 7 data bytes",
    "Message": "1 data bytes",
    "Connect": "1 client str; 2 version str; 3 data bytes; 4 subs map:SubscribeResult;"
    " 5 expires bool; 6 ttl u32; 7 ping u32; 8 pong bool; 9 session str; 10 node str;"
    " 11 time i64",
    "Disconnect": "1 code u32; 2 reason str; 3 reconnect bool",
    "Refresh": "1 expires bool; 2 ttl u32",
    "ConnectRequest": "1 token str; 2 data bytes; 3 subs map:SubscribeRequest; 4 name str;"
    " 5 version str; 6 headers map:str; 7 flag i64",
    "ConnectResult": "1 client str; 2 version str; 3 expires bool; 4 ttl u32; 5 data bytes;"
    " 6 subs map:SubscribeResult; 7 ping u32; 8 pong bool; 9 session str; 10 node str;"
    " 11 time i64",
    "RefreshRequest": "1 token str",
    "RefreshResult": "1 client str; 2 version str; 3 expires bool; 4 ttl u32",
    "SubscribeRequest": "1 channel str; 2 token str; 3 recover bool; 6 epoch str;"
    " 7 offset u64; 8 data bytes; 9 positioned bool; 10 recoverable bool;"
    " 11 join_leave bool; 12 delta str; 13 tf FilterNode; 14 flag i64",
    "SubscribeResult": "1 expires bool; 2 ttl u32; 3 recoverable bool; 6 epoch str;"
    " 7 publications []Publication; 8 recovered bool; 9 offset u64; 10 positioned bool;"
    " 11 data bytes; 12 was_recovering bool; 13 delta bool; 14 id i64",
    "SubRefreshRequest": "1 channel str; 2 token str",
    "SubRefreshResult": "1 expires bool; 2 ttl u32",
    "UnsubscribeRequest": "1 channel str",
    "UnsubscribeResult": "",
    "PublishRequest": "1 channel str; 2 data bytes",
    "PublishResult": "",
    "PresenceRequest": "1 channel str",
    "PresenceResult": "1 presence map:ClientInfo",
    "PresenceStatsRequest": "1 channel str",
    "PresenceStatsResult": "1 num_clients u32; 2 num_users u32",
    "StreamPosition": "1 offset u64; 2 epoch str",
    "HistoryRequest": "1 channel str; 7 limit i32; 8 since StreamPosition; 9 reverse bool",
    "HistoryResult": "1 publications []Publication; 2 epoch str; 3 offset u64",
    "PingRequest": "",
    "PingResult": "",
    "RPCRequest": "1 data bytes; 2 method str",
    "RPCResult": "1 data bytes",
    "SendRequest": "1 data bytes",
    "EmulationRequest": "1 node str; 2 session str; 3 data bytes",
    "FilterNode": "1 op str; 2 key str; 3 cmp str; 4 val str; 5 vals []str; 6 nodes []FilterNode",
}


def _parse_field(text: str) -> FieldSpec:
    number, name, type_ = text.split()
    label = SINGLE
    if type_.startswith("[]"):
        label, type_ = REPEATED, type_[2:]
    elif type_.startswith("map:"):
        label, type_ = MAP, type_[4:]
    if type_ in _SCALARS:
        return FieldSpec(name, int(number), _SCALARS[type_], label)
    if type_ not in _SCHEMA:
        raise ValueError(f"schema: unknown type {type_!r} of field {name!r}")
    return FieldSpec(name, int(number), MESSAGE, label, type_)


def _build(schema: dict[str, str]) -> dict[str, MessageSpec]:
    messages = {}
    for name, text in schema.items():
        fields = tuple(_parse_field(part) for part in text.split(";") if part.strip())
        messages[name] = MessageSpec(
            name,
            fields,
            by_name={f.name: f for f in fields},
            by_number={f.number: f for f in fields},
        )
    return messages


MESSAGES: Final[dict[str, MessageSpec]] = _build(_SCHEMA)
"""Every message of the schema by its client.proto name."""

KNOWN_METHODS: Final = frozenset(f.name for f in MESSAGES["Command"].fields if f.name != "id")


def command_method(command: dict[str, Any]) -> str | None:
    """The method a decoded command asks for.

    ``None`` for an empty command (``{}`` or just an id): a client's pong. A name not in
    ``KNOWN_METHODS`` is a method this server does not know: answer 104 "method not found".
    Protobuf commands carrying an unknown field number show it as ``"unknown_<number>"``.
    If a command carries several methods (never sent by the SDKs), the first one wins.
    """
    for key in command:
        if key != "id":
            return key
    return None
