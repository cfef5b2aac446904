"""The Pusher wire format: events as JSON text messages, one event per WebSocket message.

A publication in a Pusher app's channel is stored like any other: ``data`` is a JSON
value (the string a server library triggered, as a JSON string; a client event's data as
sent) and the Pusher event name rides in the tag ``pusher_event``. The codec writes
``{"event":E,"channel":C,"data":D}`` around those bytes without re-encoding them, once
per publication for all Pusher subscribers of the channel (the shard's delivery groups).

Tags the broker sets on Pusher publications (visible to a Centrifugo-protocol
subscriber too): ``pusher_event`` (event name), ``pusher_socket`` (socket id the event is
not delivered to: the sender of a client event, a trigger's ``socket_id``) and
``pusher_user`` (a client event's sender on a presence channel: pusher-js reads it as
``user_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from broker.connection.framing import Delivery, WsMessagePerFrame
from broker.protocol import ProtocolError

if TYPE_CHECKING:
    from broker.types import Publication

__all__ = ["EVENT_TAG", "PUSHER_WS", "SOCKET_TAG", "USER_TAG", "PusherCodec",
           "chorus_channel", "event", "pusher_name"]

PREFIX: Final = "pusher:"
EVENT_TAG: Final = "pusher_event"
SOCKET_TAG: Final = "pusher_socket"
USER_TAG: Final = "pusher_user"


def chorus_channel(app_id: str, name: str) -> str:
    """The Chorus channel holding Pusher channel ``name`` of app ``app_id``."""
    return f"{PREFIX}{app_id}:{name}"


def pusher_name(channel: str) -> str:
    """The Pusher channel name of a Chorus channel made by ``chorus_channel``."""
    if not channel.startswith(PREFIX):
        return channel
    return channel.split(":", 2)[2]


def event(name: str, data: Any = None, channel: str | None = None, *,
          raw_data: bytes | None = None) -> bytes:
    """One Pusher event as JSON bytes. ``data`` is JSON-encoded as a string (the Pusher
    convention for server events); ``raw_data`` is put in as it is (already JSON)."""
    parts = [b'{"event":', orjson.dumps(name)]
    if channel is not None:
        parts += (b',"channel":', orjson.dumps(channel))
    if raw_data is not None:
        parts += (b',"data":', raw_data)
    elif data is not None:
        parts += (b',"data":', orjson.dumps(orjson.dumps(data).decode()))
    parts.append(b"}")
    return b"".join(parts)


class PusherCodec:
    """Pusher events over the broker's reply dicts. Stateless; use ``PUSHER_CODEC``.

    ``decode_commands`` parses one client message into ``[{"event":..., "data":...}]``.

    Error handling: ProtocolError for a message that is not a JSON object with a string
    ``event`` (the actor answers with ``pusher:error``, it does not close).
    """

    name = "pusher"
    binary = False

    def decode_commands(self, frame: bytes | str) -> list[dict[str, Any]]:
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError as error:
            raise ProtocolError(f"not JSON: {error}") from None
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            raise ProtocolError("a Pusher message is a JSON object with an event name")
        return [message]

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        """The broker's own pushes in Pusher's words: the server ping, presence member
        events, a disconnect; others (Centrifugo-only pushes) become a no-op event."""
        if not reply:
            return b'{"event":"pusher:ping","data":{}}'
        push = reply.get("push") or {}
        channel = pusher_name(push.get("channel", ""))
        if "join" in push:
            info = push["join"]["info"]
            user_info = info.get("chan_info") or b"null"
            data = b'{"user_id":' + orjson.dumps(info["user"]) + b',"user_info":' + \
                user_info + b"}"
            return event("pusher_internal:member_added", channel=channel,
                         raw_data=orjson.dumps(data.decode()))
        if "leave" in push:
            return event("pusher_internal:member_removed",
                         {"user_id": push["leave"]["info"]["user"]}, channel)
        if "disconnect" in push:
            gone = push["disconnect"]
            return event("pusher:error", raw_data=orjson.dumps(
                {"code": gone.get("code"), "message": gone.get("reason", "")}))
        if "pub" in push:
            raise ValueError("publications go through encode_publication_push")
        return b'{"event":"pusher_internal:noop"}'

    def join(self, frames: Sequence[bytes]) -> bytes:
        # Never used to merge events into one message (see PUSHER_WS's framing); kept
        # for the Codec contract.
        return b"\n".join(frames)

    def encode_publication_push(self, channel: str, pub: Publication,
                                channel_id: int = 0) -> bytes:
        tags = pub.tags or {}
        parts = [b'{"event":', orjson.dumps(tags.get(EVENT_TAG, "message")),
                 b',"channel":', orjson.dumps(pusher_name(channel)),
                 b',"data":', pub.data or b'""']
        user = tags.get(USER_TAG)
        if user:
            parts += (b',"user_id":', orjson.dumps(user))
        parts.append(b"}")
        return b"".join(parts)


PUSHER_CODEC: Final = PusherCodec()
# pusher-js parses exactly one JSON event per WebSocket message: never joined.
PUSHER_WS: Final = Delivery("pusher/websocket", PUSHER_CODEC, WsMessagePerFrame())
