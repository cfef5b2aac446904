"""The load generator's WebSocket wire pieces (pure, no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.wsframes import (
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    accept_for,
    check_handshake_response,
    handshake_request,
    mask_frame,
    server_frame,
)


def _payloads(parser: FrameParser, data: bytes) -> list[tuple[int, bytes]]:
    return [(op, buf[s:e]) for op, buf, s, e in parser.feed(data)]


def test_accept_matches_rfc6455_example() -> None:
    assert accept_for(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_request_and_response_check() -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    req = handshake_request("127.0.0.1", 80, "/ws", key)
    assert req.startswith(b"GET /ws HTTP/1.1\r\n") and req.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Key: " + key in req
    ok = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept_for(key)
    assert check_handshake_response(ok, key) is None
    assert check_handshake_response(b"HTTP/1.1 404 Not Found", key) is not None
    bad = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope"
    assert check_handshake_response(bad, key) == "bad Sec-WebSocket-Accept"


@given(st.lists(st.binary(max_size=70000), min_size=1, max_size=4), st.data())
def test_parser_yields_every_frame_whatever_the_chunking(msgs: list[bytes],
                                                        data: st.DataObject) -> None:
    wire = b"".join(server_frame(OP_TEXT, m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = FrameParser()
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        got += [p for _, p in _payloads(parser, wire[prev:cut])]
        prev = cut
    assert got == msgs
    assert parser.idle


def test_fragmented_message_is_reassembled_around_a_control_frame() -> None:
    wire = (server_frame(OP_TEXT, b"hel", fin=False) + server_frame(OP_PING, b"p")
            + server_frame(OP_CONT, b"lo"))
    parser = FrameParser()
    assert _payloads(parser, wire) == [(OP_PING, b"p"), (OP_TEXT, b"hello")]


def test_masked_frame_unmasks_to_the_payload() -> None:
    payload = b'{"id":1,"connect":{}}'
    frame = mask_frame(OP_TEXT, payload, mask=b"\x01\x02\x03\x04")
    assert frame[1] & 0x80  # the mask bit a client must set
    assert frame[6:] != payload
    assert _payloads(FrameParser(), frame) == [(OP_TEXT, payload)]
