"""Round trips of every command, reply and push type through both codecs, and the protobuf
codec cross-checked both ways against the reference ``client_pb2``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import (
    BINARY_PAYLOADS,
    JSON_PAYLOADS,
    fill_pb,
    messages,
    normalize,
    pb_class,
    pb_to_dict,
)

from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, command_method
from broker.protocol.base import MESSAGE, MESSAGES
from broker.protocol.protobuf_codec import decode_message, encode_message

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIDE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COMMAND_METHODS = [f for f in MESSAGES["Command"].fields if f.name != "id"]
REPLY_RESULTS = [f for f in MESSAGES["Reply"].fields if f.name not in ("id", "push")]
PUSH_TYPES = [f for f in MESSAGES["Push"].fields if f.kind == MESSAGE]
CODECS: dict[str, tuple[Any, Any]] = {
    "json": (JSON_CODEC, JSON_PAYLOADS),
    "protobuf": (PROTOBUF_CODEC, BINARY_PAYLOADS),
}
ids = st.integers(0, 2**32 - 1)


def command_of(method: str, payloads: Any) -> Any:
    body = messages(MESSAGES["Command"].by_name[method].message or "", payloads)
    return st.builds(lambda i, b: {"id": i, method: b}, ids, body)


def reply_of(result: str, payloads: Any) -> Any:
    body = messages(MESSAGES["Reply"].by_name[result].message or "", payloads)
    return st.builds(lambda i, b: {"id": i, result: b}, ids, body)


def push_of(kind: str, payloads: Any) -> Any:
    body = messages(MESSAGES["Push"].by_name[kind].message or "", payloads)
    return st.builds(lambda ch, b: {"push": {"channel": ch, kind: b}}, st.text(max_size=8), body)


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("method", [f.name for f in COMMAND_METHODS])
def test_every_command_round_trips(codec_name: str, method: str) -> None:
    codec, payloads = CODECS[codec_name]

    @FAST
    @given(command_of(method, payloads))
    def check(command: dict[str, Any]) -> None:
        decoded = codec.decode_commands(codec.encode_command(command))
        assert decoded == [normalize("Command", command)]
        assert command_method(decoded[0]) == method

    check()


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("result", [f.name for f in REPLY_RESULTS])
def test_every_reply_round_trips(codec_name: str, result: str) -> None:
    codec, payloads = CODECS[codec_name]

    @FAST
    @given(reply_of(result, payloads))
    def check(reply: dict[str, Any]) -> None:
        assert codec.decode_replies(codec.encode_reply(reply)) == [normalize("Reply", reply)]

    check()


@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("kind", [f.name for f in PUSH_TYPES])
def test_every_push_round_trips(codec_name: str, kind: str) -> None:
    codec, payloads = CODECS[codec_name]

    @FAST
    @given(push_of(kind, payloads))
    def check(reply: dict[str, Any]) -> None:
        assert codec.decode_replies(codec.encode_reply(reply)) == [normalize("Reply", reply)]

    check()


@pytest.mark.parametrize("codec_name", CODECS)
def test_a_batch_keeps_order_and_joins_as_the_clients_expect(codec_name: str) -> None:
    codec, _ = CODECS[codec_name]
    commands = [{"id": 1, "connect": {"name": "py"}}, {}, {"id": 2, "rpc": {"method": "m"}}]
    frame = (b"\n" if codec_name == "json" else b"").join(codec.encode_command(c) for c in commands)
    assert codec.decode_commands(frame) == commands
    replies = [{"id": 1, "connect": {"client": "c"}}, {}, {"id": 2, "rpc": {}}]
    encoded = [codec.encode_reply(r) for r in replies]
    joined = codec.join(encoded)
    assert codec.decode_replies(joined) == replies
    assert joined == (b"\n" if codec_name == "json" else b"").join(encoded)


def test_empty_messages_are_pings_and_pongs() -> None:
    assert JSON_CODEC.encode_reply({}) == b"{}"
    assert PROTOBUF_CODEC.encode_reply({}) == b"\x00"
    assert JSON_CODEC.decode_commands(b"{}") == [{}]
    assert PROTOBUF_CODEC.decode_commands(b"\x00") == [{}]
    assert command_method({}) is None


def test_present_empty_results_are_kept_and_zero_scalars_omitted() -> None:
    reply = {"id": 3, "publish": {}, "error": None}
    assert JSON_CODEC.encode_reply(reply) == b'{"id":3,"publish":{}}'
    sub = {"id": 0, "subscribe": {"recoverable": False, "epoch": "", "offset": 0}}
    assert JSON_CODEC.encode_reply(sub) == b'{"subscribe":{}}'
    assert PROTOBUF_CODEC.encode_reply(sub) == b"\x02\x32\x00"


@WIDE
@given(messages("Command", BINARY_PAYLOADS))
def test_protobuf_commands_match_the_reference_both_ways(command: dict[str, Any]) -> None:
    expected = normalize("Command", command)
    mine = encode_message("Command", command)
    assert pb_to_dict(pb_class("Command").FromString(mine)) == expected
    theirs = fill_pb(pb_class("Command")(), command).SerializeToString()
    assert decode_message("Command", theirs) == expected


@WIDE
@given(messages("Reply", BINARY_PAYLOADS))
def test_protobuf_replies_match_the_reference_both_ways(reply: dict[str, Any]) -> None:
    expected = normalize("Reply", reply)
    mine = encode_message("Reply", reply)
    assert pb_to_dict(pb_class("Reply").FromString(mine)) == expected
    theirs = fill_pb(pb_class("Reply")(), reply).SerializeToString()
    assert decode_message("Reply", theirs) == expected


@WIDE
@given(messages("Reply", JSON_PAYLOADS))
def test_json_replies_round_trip_with_payloads_unchanged(reply: dict[str, Any]) -> None:
    assert JSON_CODEC.decode_replies(JSON_CODEC.encode_reply(reply)) == [normalize("Reply", reply)]


def test_protobuf_merges_a_message_field_sent_twice_like_the_reference() -> None:
    first = encode_message(
        "Command",
        {"connect": {"token": "a", "subs": {"x": {"offset": 1}, "y": {"epoch": "e"}}}},
    )
    second = encode_message("Command", {"connect": {"name": "n", "subs": {"x": {"recover": True}}}})
    expected = pb_to_dict(pb_class("Command").FromString(first + second))
    assert decode_message("Command", first + second) == expected
    assert expected == {
        "connect": {
            "token": "a",
            "name": "n",
            "subs": {"x": {"recover": True}, "y": {"epoch": "e"}},
        }
    }


@FAST
@given(messages("Reply", BINARY_PAYLOADS), messages("Reply", BINARY_PAYLOADS))
def test_protobuf_concatenated_messages_merge_like_the_reference(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    wire = encode_message("Reply", first) + encode_message("Reply", second)
    assert decode_message("Reply", wire) == pb_to_dict(pb_class("Reply").FromString(wire))


def test_negative_ints_use_ten_byte_varints_like_the_reference() -> None:
    for reply in ({"push": {"id": -1}}, {"push": {"connect": {"time": -(2**63)}}}):
        mine = encode_message("Reply", reply)
        assert mine == fill_pb(pb_class("Reply")(), reply).SerializeToString()
        assert decode_message("Reply", mine) == reply
    history = {"id": 1, "history": {"channel": "c", "limit": -1}}
    assert decode_message("Command", encode_message("Command", history)) == history
