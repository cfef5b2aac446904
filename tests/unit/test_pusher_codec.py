"""The Pusher codec and signatures: pure functions, checked against hand-built values."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from broker.protocol import ProtocolError
from broker.pusher import sign
from broker.pusher.codec import PUSHER_CODEC, chorus_channel, pusher_name
from broker.types import Publication


def test_a_publication_becomes_the_pusher_event_around_its_stored_data() -> None:
    channel = chorus_channel("42", "presence-a:b")
    assert pusher_name(channel) == "presence-a:b"
    pub = Publication(b'"{\\"x\\":1}"', tags={"pusher_event": "ev", "pusher_user": "u1"})
    event = orjson.loads(PUSHER_CODEC.encode_publication_push(channel, pub))
    assert event == {"event": "ev", "channel": "presence-a:b", "data": '{"x":1}',
                     "user_id": "u1"}


def test_member_events_and_the_ping_are_pusher_events() -> None:
    info = {"user": "u1", "client": "1.2", "chan_info": b'{"name":"A"}'}
    added = orjson.loads(PUSHER_CODEC.encode_reply(
        {"push": {"channel": "pusher:42:presence-r", "join": {"info": info}}}))
    assert added["event"] == "pusher_internal:member_added"
    assert orjson.loads(added["data"]) == {"user_id": "u1", "user_info": {"name": "A"}}
    removed = orjson.loads(PUSHER_CODEC.encode_reply(
        {"push": {"channel": "pusher:42:presence-r", "leave": {"info": info}}}))
    assert orjson.loads(removed["data"]) == {"user_id": "u1"}
    assert orjson.loads(PUSHER_CODEC.encode_reply({}))["event"] == "pusher:ping"


@pytest.mark.parametrize("frame", [b"{", b"[]", b'{"data":1}', b'{"event":3}'])
def test_malformed_messages_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        PUSHER_CODEC.decode_commands(frame)


def test_channel_auth_is_hmac_of_socket_channel_and_channel_data() -> None:
    digest = hmac.new(b"s", b"1.2:presence-x:{}", hashlib.sha256).hexdigest()
    assert sign.channel_auth_ok("k", "s", "1.2", "presence-x", f"k:{digest}", "{}")
    assert not sign.channel_auth_ok("k", "s", "1.2", "presence-x", f"k:{digest}", None)
    assert not sign.channel_auth_ok("k", "s", "1.3", "presence-x", f"k:{digest}", "{}")
    assert not sign.channel_auth_ok("other", "s", "1.2", "presence-x", f"k:{digest}", "{}")
    assert not sign.channel_auth_ok("k", "s", "1.2", "presence-x", None, "{}")
