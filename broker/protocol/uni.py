"""The unidirectional JSON protocol: what uni_websocket, uni_sse and uni_http_stream send.

Centrifugo's unidirectional transports carry bare ``Push`` messages, not ``Reply``
messages wrapping them: a publication is ``{"channel":"news","pub":{…}}`` where the
bidirectional protocol sends ``{"push":{"channel":"news","pub":{…}}}``. The connect
result arrives as the push ``{"connect":{…}}``, a disconnect as ``{"disconnect":{…}}``,
and a server ping is the empty push ``{}``. Clients send nothing after the connect
request (which the transport handler reads: first message, ``cf_connect`` or body).

The codec takes the broker's usual reply dicts (``{"push": {...}}`` or the ping ``{}``)
and writes the push inside, so the connection actor and the shards use it like the
others; a publication push is the JSON codec's bytes without the outer wrapper (one
slice per publication, not per subscriber).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from broker.protocol.base import ProtocolError
from broker.protocol.json_codec import JSON_CODEC, decode_message, encode_message

if TYPE_CHECKING:
    from broker.types import Publication

__all__ = ["UNI_JSON_CODEC", "UniJsonCodec", "decode_connect_request"]

_PUSH_HEAD = b'{"push":'


class UniJsonCodec:
    """Push-only JSON. Stateless; use the ``UNI_JSON_CODEC`` singleton.

    Error handling: ``decode_commands`` always raises ProtocolError (a unidirectional
    client sends no commands); ``encode_reply`` raises ValueError for a reply that is
    neither a push nor the empty ping (a command reply has no place on these transports).
    """

    name = "json"
    binary = False

    def decode_commands(self, frame: bytes | str) -> list[dict[str, Any]]:
        raise ProtocolError("a unidirectional connection sends no commands")

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        if not reply:
            return b"{}"  # the server ping: an empty push
        push = reply.get("push")
        if push is None or len(reply) != 1:
            raise ValueError(f"unidirectional transports carry pushes only: {sorted(reply)}")
        return encode_message("Push", push)

    def join(self, frames: Sequence[bytes]) -> bytes:
        return b"\n".join(frames)

    def encode_publication_push(self, channel: str, pub: Publication,
                                channel_id: int = 0) -> bytes:
        # Uni clients send no subscribe flags, so channel_id is always 0 here.
        frame = JSON_CODEC.encode_publication_push(channel, pub, channel_id)
        return frame[len(_PUSH_HEAD):-1]  # {"push":X} -> X


UNI_JSON_CODEC: Final = UniJsonCodec()


def decode_connect_request(data: bytes | str) -> dict[str, Any]:
    """A ``ConnectRequest`` in JSON (the uni transports' first message or parameter).

    Empty input and a literal ``null`` are an empty request, as in Centrifugo.

    Error handling: ProtocolError for anything that is not a JSON object of the
    ConnectRequest schema.
    """
    text = data.strip() if isinstance(data, str) else bytes(data).strip()
    if not text or text in ("null", b"null"):
        return {}
    return decode_message("ConnectRequest", text)
