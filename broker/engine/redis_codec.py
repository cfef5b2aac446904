"""Pure encoding for the Redis engine: key names, the stored/published message format, routing.

No I/O here; everything is tested without an event loop.

Key layout (prefix ``P``, channel ``CH``). Every key and the pub/sub channel of one
channel carry the hash tag ``{CH}``, so on a Cluster they share a slot and one Lua
script may touch them all and SPUBLISH::

    P.meta.{CH}           hash: "e" epoch, "t" top offset      (history meta TTL)
                          after a restore also "pe", "pt": the backup's epoch and top
    P.stream.{CH}         stream, entry id "<offset>-0", field "d" = body  (history TTL)
    P.idem.{CH}.KEY       string: the earlier publish result   (idempotent TTL)
    P.pexp.{CH}           zset client id -> expiry (unix ms)   (presence TTL)
    P.pinfo.{CH}          hash client id -> encoded ClientInfo (presence TTL)
    P.occ.{CH}            zset node id -> expiry (unix ms)     (occupancy TTL)
    P.restore.{CH}        stream being restored (chorus restore, broker.backup; 1 h)
    P.probe.{CH}          string: VERIFY's write for the WAIT after it (redis_doubt; 60 s)
    P.ch.{CH}             pub/sub channel of publications and join/leave
    P.control             pub/sub channel of node-to-node control messages

History offsets are the stream IDs themselves (``<offset>-0``): reading "after offset
n" is ``XRANGE key (n-0 +``, no scan and no per-entry offset field.

Message format on pub/sub (first byte is the kind)::

    b"p" <offset> b":" <epoch> b":" <body>     publication (offset 0, epoch "" = no history)
    b"j" <body> / b"l" <body>                  join / leave (body with empty data, info set)
    b"e" <top> b":" <epoch>                    the channel moved to a new epoch at top
                                               (VERIFY, broker.engine.redis_doubt)
    b"c" <u16 len><node id> <data>              control

``body`` is written by the publishing node and stored as-is in the stream:
``!BQ`` (flags, time ms), then u32-length-prefixed fields: node id, data, [user, client],
[conn_info], [chan_info], [u16 count, then key, value per tag]. Flag 16 (no field) marks
a publication published with delta (``Publication.delta``). The Lua script only
prepends offset and epoch, so Python encodes once and Redis never parses the body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.types import ClientInfo, Publication, StreamPosition

__all__ = [
    "KIND_CONTROL",
    "KIND_EPOCH",
    "KIND_JOIN",
    "KIND_LEAVE",
    "KIND_PUBLICATION",
    "Body",
    "DecodeError",
    "KeyScheme",
    "decode_body",
    "decode_control",
    "decode_epoch",
    "decode_info",
    "decode_published",
    "encode_body",
    "encode_control",
    "encode_info",
    "jump_hash",
    "node_marker",
    "node_of_body",
    "publication_from_stream",
    "publication_of",
    "sent_by",
]

_HEAD = struct.Struct("!BQ")
_LEN = struct.Struct("!I")
_COUNT = struct.Struct("!H")
_HAS_INFO, _HAS_CONN, _HAS_CHAN, _HAS_TAGS, _DELTA = 1, 2, 4, 8, 16

KIND_PUBLICATION = b"p"[0]
KIND_JOIN = b"j"[0]
KIND_LEAVE = b"l"[0]
KIND_CONTROL = b"c"[0]
KIND_EPOCH = b"e"[0]


class DecodeError(ValueError):
    """A message that is not in this engine's format (another program's, or corrupt)."""


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """Names of every Redis key and pub/sub channel, from one prefix."""

    prefix: str

    def meta(self, channel: str) -> str:
        return f"{self.prefix}.meta.{{{channel}}}"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}.stream.{{{channel}}}"

    def idempotency(self, channel: str, key: str) -> str:
        return f"{self.prefix}.idem.{{{channel}}}.{key}"

    def presence_expiry(self, channel: str) -> str:
        return f"{self.prefix}.pexp.{{{channel}}}"

    def presence_info(self, channel: str) -> str:
        return f"{self.prefix}.pinfo.{{{channel}}}"

    def occupancy(self, channel: str) -> str:
        return f"{self.prefix}.occ.{{{channel}}}"

    def pubsub(self, channel: str) -> str:
        return f"{self.prefix}.ch.{{{channel}}}"

    def staging(self, channel: str) -> str:
        return f"{self.prefix}.restore.{{{channel}}}"

    def probe(self, channel: str) -> str:
        return f"{self.prefix}.probe.{{{channel}}}"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def pubsub_head(self) -> str:
        """What every channel's pub/sub name begins with (see channel_of)."""
        return f"{self.prefix}.ch.{{"

    def channel_of(self, pubsub_name: str) -> str | None:
        """The broker channel of a pub/sub channel name; None for control or foreign names."""
        head = self.pubsub_head
        if pubsub_name.startswith(head) and pubsub_name.endswith("}"):
            return pubsub_name[len(head) : -1]
        return None


# -- bodies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Body:
    """A decoded body: who sent it and the publication fields (offset not included)."""

    node: str
    time: int
    data: bytes
    info: ClientInfo | None
    tags: dict[str, str] | None
    delta: bool = False


def _field(value: bytes) -> bytes:
    return _LEN.pack(len(value)) + value


def encode_body(
    node: str,
    time_ms: int,
    data: bytes,
    info: ClientInfo | None,
    tags: dict[str, str] | None,
    delta: bool = False,
) -> bytes:
    """The body of a publication (or of a join/leave with ``data`` empty)."""
    flags = _DELTA if delta else 0
    parts = [b"", _field(node.encode()), _field(data)]
    if info is not None:
        flags |= _HAS_INFO
        parts += (_field(info.user.encode()), _field(info.client.encode()))
        if info.conn_info is not None:
            flags |= _HAS_CONN
            parts.append(_field(info.conn_info))
        if info.chan_info is not None:
            flags |= _HAS_CHAN
            parts.append(_field(info.chan_info))
    if tags:
        flags |= _HAS_TAGS
        parts.append(_COUNT.pack(len(tags)))
        for key, value in tags.items():
            parts += (_field(key.encode()), _field(value.encode()))
    parts[0] = _HEAD.pack(flags, time_ms)
    return b"".join(parts)


class _Reader:
    """Sequential reads over a bytes buffer; raises DecodeError when it runs out."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            raise DecodeError("message truncated")
        chunk, self.pos = self.buf[self.pos : end], end
        return chunk

    def field(self) -> bytes:
        (size,) = _LEN.unpack(self.take(_LEN.size))
        return self.take(size)


def decode_body(buf: bytes, start: int = 0) -> Body:
    """Decode a body beginning at ``start``.

    Error handling: raises DecodeError on truncated or malformed input.
    """
    reader = _Reader(buf, start)
    try:
        flags, time_ms = _HEAD.unpack(reader.take(_HEAD.size))
        node = reader.field().decode()
        data = reader.field()
        info = None
        if flags & _HAS_INFO:
            user, client = reader.field().decode(), reader.field().decode()
            conn = reader.field() if flags & _HAS_CONN else None
            chan = reader.field() if flags & _HAS_CHAN else None
            info = ClientInfo(user, client, conn, chan)
        tags = None
        if flags & _HAS_TAGS:
            (count,) = _COUNT.unpack(reader.take(_COUNT.size))
            tags = {}
            for _ in range(count):
                key = reader.field().decode()
                tags[key] = reader.field().decode()
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc)) from exc
    return Body(node, time_ms, data, info, tags, bool(flags & _DELTA))


def node_marker(node: str) -> bytes:
    """How ``node`` begins a body's node field (its length, then its bytes): see sent_by."""
    raw = node.encode()
    return _LEN.pack(len(raw)) + raw


def sent_by(buf: bytes, start: int, marker: bytes) -> bool:
    """True if the body at ``start`` was sent by the node of ``marker`` (node_marker):
    a comparison in place, nothing decoded (a node drops every echo of its own)."""
    return buf.startswith(marker, start + _HEAD.size)


def node_of_body(buf: bytes, start: int = 0) -> str:
    """Only the sender's node id (to drop own messages without decoding the rest)."""
    reader = _Reader(buf, start + _HEAD.size)
    try:
        return reader.field().decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(str(exc)) from exc


def decode_published(msg: bytes) -> tuple[int, str, int]:
    """Split ``b"p<offset>:<epoch>:<body>"``: (offset, epoch, index where body starts).

    Error handling: raises DecodeError if the message is not a publication.
    """
    first = msg.find(b":", 1)
    second = msg.find(b":", first + 1) if first > 0 else -1
    if not msg or msg[0] != KIND_PUBLICATION or second < 0:
        raise DecodeError("not a publication message")
    try:
        offset = int(msg[1:first])
        epoch = msg[first + 1 : second].decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc)) from exc
    return offset, epoch, second + 1


def decode_epoch(msg: bytes) -> StreamPosition:
    """``b"e<top>:<epoch>"``: the channel's new epoch and the top it starts after.

    Error handling: raises DecodeError if the message is not an epoch change.
    """
    colon = msg.find(b":", 1)
    if not msg or msg[0] != KIND_EPOCH or colon < 0:
        raise DecodeError("not an epoch message")
    try:
        return StreamPosition(int(msg[1:colon]), msg[colon + 1 :].decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc)) from exc


def publication_of(msg: bytes) -> tuple[Publication, StreamPosition | None, str]:
    """A published (or stored idempotent) message as (Publication, position, sender node).

    ``position`` is None for a publication without history (offset 0).
    """
    offset, epoch, start = decode_published(msg)
    body = decode_body(msg, start)
    pub = Publication(body.data, offset, body.info, body.tags, body.time, body.delta)
    return pub, (StreamPosition(offset, epoch) if offset else None), body.node


def publication_from_stream(entry_id: bytes, body: bytes) -> tuple[Publication, str]:
    """A stream entry (id ``<offset>-0``) as (Publication, sender node)."""
    try:
        offset = int(entry_id.split(b"-", 1)[0])
    except ValueError as exc:
        raise DecodeError(f"bad stream id {entry_id!r}") from exc
    decoded = decode_body(body)
    pub = Publication(decoded.data, offset, decoded.info, decoded.tags, decoded.time,
                      decoded.delta)
    return pub, decoded.node


def encode_info(info: ClientInfo) -> bytes:
    """A ClientInfo alone (presence values): a body with no data."""
    return encode_body("", 0, b"", info, None)


def decode_info(buf: bytes) -> ClientInfo:
    """Inverse of encode_info. Error handling: DecodeError if it holds no ClientInfo."""
    info = decode_body(buf).info
    if info is None:
        raise DecodeError("presence value without client info")
    return info


def encode_control(node: str, data: bytes) -> bytes:
    raw = node.encode()
    return b"c" + _COUNT.pack(len(raw)) + raw + data


def decode_control(msg: bytes) -> tuple[str, bytes]:
    """(sender node, data) of a control message. Error handling: DecodeError if malformed."""
    if len(msg) < 3 or msg[0] != KIND_CONTROL:
        raise DecodeError("not a control message")
    (size,) = _COUNT.unpack_from(msg, 1)
    end = 3 + size
    if end > len(msg):
        raise DecodeError("control message truncated")
    try:
        return msg[3:end].decode(), msg[end:]
    except UnicodeDecodeError as exc:
        raise DecodeError(str(exc)) from exc


# -- routing ------------------------------------------------------------------------------


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach): adding a bucket moves only 1/n of the keys."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    b, j = -1, 0
    key &= 0xFFFFFFFFFFFFFFFF
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b
