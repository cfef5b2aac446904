"""How encoded replies are framed on each transport, and the delivery groups built on that.

A *codec* turns a reply or a publication push into protocol bytes (JSON line, varint-
delimited protobuf, or a unidirectional JSON push); a *framing* wraps those bytes for one
transport: a WebSocket data frame, an SSE event (``data: …\\n\\n``), a newline-terminated
line of an HTTP stream, or the protobuf bytes as they are (already length-delimited).
A ``Delivery`` is the pair, and it is what a channel shard groups subscribers by: a
publication is encoded once per codec and framed once per delivery, and the same bytes
go to every subscriber of the group — never one concatenation per subscriber.

Every framing has two operations, both pure: ``one(frame)`` — the bytes that carry a
single frame — and ``many(frames)`` — the bytes that carry several frames written at
once (the outbox coalesces what arrives within one loop iteration). A framing whose
``many`` is nothing but the ``one`` of each frame back to back says so
(``concatenates``): its outbox (``broker.connection.outbox.WireOutbox``) queues the wire
bytes the shard framed once for the whole group and joins them, instead of framing each
frame again for each subscriber.

Streamed HTTP bodies are sent close-delimited (no chunked transfer coding, see
``broker.transport.streams``), so these framings are the whole wire format there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from broker.connection.wsframe import ws_frame, ws_header
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, Codec
from broker.protocol.uni import UNI_JSON_CODEC

__all__ = [
    "SSE_JSON",
    "STREAM_JSON",
    "STREAM_PROTOBUF",
    "UNI_SSE",
    "UNI_STREAM",
    "UNI_WS",
    "UNI_WS_JOINED",
    "WS_JSON",
    "WS_PROTOBUF",
    "Delivery",
    "Framing",
    "LineFraming",
    "RawFraming",
    "SseFraming",
    "WsFraming",
    "WsMessagePerFrame",
]


class Framing(Protocol):
    """Wraps encoded frames for one transport."""

    # True when ``many(frames) == b"".join(one(f) for f in frames)`` for any frames.
    concatenates: bool

    def one(self, frame: bytes) -> bytes:
        """The wire bytes of one frame."""
        ...

    def many(self, frames: Sequence[bytes]) -> bytes:
        """The wire bytes of several frames sent in one write, in order."""
        ...


class WsFraming:
    """Bidirectional WebSocket: one frame per message; several frames joined by the
    codec (newlines for JSON, back to back for protobuf) into one message."""

    __slots__ = ("_join", "binary")
    concatenates = False  # several frames are one message

    def __init__(self, binary: bool, join: Callable[[Sequence[bytes]], bytes]) -> None:
        self.binary = binary
        self._join = join

    def one(self, frame: bytes) -> bytes:
        return ws_frame(frame, self.binary)

    def many(self, frames: Sequence[bytes]) -> bytes:
        payload = self._join(frames)
        return ws_header(len(payload), self.binary) + payload


class WsMessagePerFrame:
    """Unidirectional WebSocket (Centrifugo's default): every push is its own text
    message, so a client without an SDK parses exactly one JSON object per message."""

    __slots__ = ()
    concatenates = True

    def one(self, frame: bytes) -> bytes:
        return ws_frame(frame, False)

    def many(self, frames: Sequence[bytes]) -> bytes:
        return b"".join([ws_frame(frame, False) for frame in frames])


class LineFraming:
    """HTTP streaming with JSON: every frame is one line ending in ``\\n``."""

    __slots__ = ()
    concatenates = True

    def one(self, frame: bytes) -> bytes:
        return frame + b"\n"

    def many(self, frames: Sequence[bytes]) -> bytes:
        return b"\n".join(frames) + b"\n"


class RawFraming:
    """HTTP streaming with protobuf: frames are varint-length-delimited already."""

    __slots__ = ()
    concatenates = True

    def one(self, frame: bytes) -> bytes:
        return frame

    def many(self, frames: Sequence[bytes]) -> bytes:
        return b"".join(frames)


class SseFraming:
    """Server-Sent Events: every frame is one event, ``data: <frame>\\n\\n``.

    A JSON frame never contains a newline (compact JSON; payloads are re-dumped compact
    when they enter the broker), so one ``data:`` line carries it whole.
    """

    __slots__ = ()
    concatenates = True

    def one(self, frame: bytes) -> bytes:
        return b"data: " + frame + b"\n\n"

    def many(self, frames: Sequence[bytes]) -> bytes:
        return b"data: " + b"\n\ndata: ".join(frames) + b"\n\n"


@dataclass(frozen=True, eq=False, slots=True)
class Delivery:
    """A codec and a framing: the group a subscriber belongs to in its channel's shard.

    Compared and hashed by identity: use the module's constants.
    """

    name: str  # for health and metrics, e.g. "sse/json"
    codec: Codec
    framing: Framing


_LINES = LineFraming()
_SSE = SseFraming()

WS_JSON = Delivery("websocket/json", JSON_CODEC, WsFraming(False, JSON_CODEC.join))
WS_PROTOBUF = Delivery("websocket/protobuf", PROTOBUF_CODEC,
                       WsFraming(True, PROTOBUF_CODEC.join))
STREAM_JSON = Delivery("http_stream/json", JSON_CODEC, _LINES)
STREAM_PROTOBUF = Delivery("http_stream/protobuf", PROTOBUF_CODEC, RawFraming())
SSE_JSON = Delivery("sse/json", JSON_CODEC, _SSE)
UNI_WS = Delivery("uni_websocket/json", UNI_JSON_CODEC, WsMessagePerFrame())
UNI_WS_JOINED = Delivery("uni_websocket/json-joined", UNI_JSON_CODEC,
                         WsFraming(False, UNI_JSON_CODEC.join))
UNI_SSE = Delivery("uni_sse/json", UNI_JSON_CODEC, _SSE)
UNI_STREAM = Delivery("uni_http_stream/json", UNI_JSON_CODEC, _LINES)
