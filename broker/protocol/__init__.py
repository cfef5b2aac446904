"""Centrifugo client protocol v2: pure codecs (JSON, protobuf) and the code tables.

Commands and replies are dicts in the shape of the JSON protocol (see ``base``); pick the
codec for a connection with ``codec_for_subprotocol`` and encode a publication once per
wire format with ``encode_publication_push``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.protocol.base import KNOWN_METHODS, Codec, ProtocolError, command_method
from broker.protocol.json_codec import JSON_CODEC, JsonCodec
from broker.protocol.protobuf_codec import PROTOBUF_CODEC, ProtobufCodec

if TYPE_CHECKING:
    from broker.types import Publication

__all__ = [
    "JSON_CODEC",
    "KNOWN_METHODS",
    "PROTOBUF_CODEC",
    "PROTOBUF_SUBPROTOCOL",
    "Codec",
    "JsonCodec",
    "ProtobufCodec",
    "ProtocolError",
    "codec_for_subprotocol",
    "command_method",
    "encode_publication_push",
]

PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


def codec_for_subprotocol(name: str | None) -> Codec:
    """The protobuf codec for the ``centrifuge-protobuf`` WebSocket subprotocol, else JSON."""
    return PROTOBUF_CODEC if name == PROTOBUF_SUBPROTOCOL else JSON_CODEC


def encode_publication_push(codec: Codec, channel: str, pub: Publication,
                            channel_id: int = 0) -> bytes:
    """The publication push for ``channel``, encoded by ``codec`` like ``encode_reply``.

    Call it once per publication and wire format; the bytes go to every subscriber that
    speaks that format (``codec.join`` them with other replies as usual). ``pub.time`` is
    not sent (the SDKs do not read it). With ``channel_id`` (channel compaction) the push
    carries that ``id`` in place of the channel name.
    """
    return codec.encode_publication_push(channel, pub, channel_id)
