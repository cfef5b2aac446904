"""Error and disconnect code tables: upstream numbers, flags and the reconnect rule."""

from __future__ import annotations

import pytest

from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from broker.protocol import codes as c

UPSTREAM_ERRORS = {
    100: ("internal server error", True),
    101: ("unauthorized", False),
    102: ("unknown channel", False),
    103: ("permission denied", False),
    104: ("method not found", False),
    105: ("already subscribed", False),
    106: ("limit exceeded", False),
    107: ("bad request", False),
    108: ("not available", False),
    109: ("token expired", False),
    110: ("expired", False),
    111: ("too many requests", True),
    112: ("unrecoverable position", False),
    113: ("token revoked", False),
}

UPSTREAM_DISCONNECTS = {
    3000: "connection closed",
    3001: "shutdown",
    3004: "internal server error",
    3005: "connection expired",
    3006: "subscription expired",
    3008: "slow",
    3009: "write error",
    3010: "insufficient state",
    3011: "force reconnect",
    3012: "no pong",
    3013: "too many requests",
    3500: "invalid token",
    3501: "bad request",
    3502: "stale",
    3503: "force disconnect",
    3504: "connection limit",
    3505: "channel limit",
    3506: "inappropriate protocol",
    3507: "permission denied",
    3508: "not available",
    3509: "too many errors",
}


def test_error_table_has_the_upstream_numbers_messages_and_flags() -> None:
    table = {code: (e.message, e.temporary) for code, e in c.ERROR_BY_CODE.items()}
    assert table == UPSTREAM_ERRORS
    assert c.ERROR_METHOD_NOT_FOUND.code == 104
    assert c.ERROR_UNRECOVERABLE_POSITION.code == 112


def test_disconnect_table_has_the_upstream_numbers_and_reasons() -> None:
    assert {code: d.reason for code, d in c.DISCONNECT_BY_CODE.items()} == UPSTREAM_DISCONNECTS
    assert c.DISCONNECT_BAD_REQUEST.code == 3501
    assert c.DISCONNECT_SLOW.code == 3008


def test_every_table_entry_reconnects_as_its_range_says() -> None:
    for d in c.DISCONNECT_BY_CODE.values():
        assert d.reconnect == c.reconnects(d.code) == (d.code < 3500), d
        assert len(d.reason.encode()) <= 123


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1000, True),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (5000, True),
    ],
)
def test_reconnect_rule_by_range(code: int, reconnect: bool) -> None:
    assert c.reconnects(code) is reconnect
    assert c.DisconnectCode.of(code, "custom").reconnect is reconnect


def test_error_reply_encodes_like_upstream() -> None:
    reply = c.ERROR_PERMISSION_DENIED.to_reply(3)
    assert reply == {"id": 3, "error": {"code": 103, "message": "permission denied"}}
    assert JSON_CODEC.encode_reply(reply) == (
        b'{"id":3,"error":{"code":103,"message":"permission denied"}}'
    )
    temporary = c.ERROR_INTERNAL.to_reply(9)
    assert JSON_CODEC.decode_replies(JSON_CODEC.encode_reply(temporary)) == [temporary]
    assert PROTOBUF_CODEC.decode_replies(PROTOBUF_CODEC.encode_reply(temporary)) == [temporary]
    assert temporary["error"]["temporary"] is True
    assert c.ERROR_BAD_REQUEST.to_reply(0) == {"error": {"code": 107, "message": "bad request"}}


def test_disconnect_push_encodes() -> None:
    push = c.DISCONNECT_SHUTDOWN.to_push()
    assert push == {"push": {"disconnect": {"code": 3001, "reason": "shutdown", "reconnect": True}}}
    assert PROTOBUF_CODEC.decode_replies(PROTOBUF_CODEC.encode_reply(push)) == [push]
