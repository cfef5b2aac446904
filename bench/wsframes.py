"""Minimal WebSocket wire pieces for the load generator: pure functions, no I/O.

The load generator must cost as little client CPU as possible, so it does not use a
WebSocket library: it writes the HTTP upgrade request by hand, masks its (rare) outgoing
frames, and walks server frames in place with `FrameParser`, which hands out
`(opcode, buffer, start, end)` spans instead of copying payloads.

Guarantees:
- `FrameParser.feed` yields every complete frame exactly once, in order, whatever the
  chunking of the input (a frame split over any number of reads, or many frames in one).
- Fragmented messages (FIN=0 + continuation frames) are reassembled into one message.
- Server frames are expected unmasked (RFC 6455 §5.1); a masked server frame is still
  unmasked correctly rather than misparsed.

Error handling: `FrameParser.feed` raises `ValueError` on a protocol violation it cannot
walk past (a 64-bit length with the top bit set); callers close the connection.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterator

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Frame = tuple[int, bytes, int, int]
"""(opcode, buffer, start, end): the payload is buffer[start:end]."""


def handshake_request(host: str, port: int, path: str, key: bytes) -> bytes:
    """The HTTP/1.1 upgrade request for `path`; `key` is the base64 Sec-WebSocket-Key."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()


def new_key() -> bytes:
    """A fresh random base64 Sec-WebSocket-Key (16 random bytes, RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16))


def accept_for(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


def check_handshake_response(head: bytes, key: bytes) -> str | None:
    """Validate the server's response head (up to and excluding the blank line).

    Returns None when it is a valid 101 upgrade for `key`, else a short reason.
    """
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        return f"status {lines[0][:80]!r}"
    expected = accept_for(key)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            return None if value.strip() == expected else "bad Sec-WebSocket-Accept"
    return "no Sec-WebSocket-Accept"


def mask_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One FIN frame from the client: masked, as RFC 6455 §5.3 requires of clients."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + _xor(payload, mask)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked frame as a server sends it (used by the baseline server and tests)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def _xor(payload: bytes, mask: bytes) -> bytes:
    # int arithmetic on the whole payload: much faster than a per-byte loop in Python.
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    x = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return x.to_bytes(n, "big")


class FrameParser:
    """Incremental parser of server→client frames.

    Resource handling: keeps at most one incomplete frame (plus a fragmented message
    being reassembled) between calls.
    """

    __slots__ = ("_buf", "_frag", "_frag_op")

    def __init__(self) -> None:
        self._buf = b""
        self._frag: list[bytes] = []
        self._frag_op = OP_TEXT

    @property
    def idle(self) -> bool:
        """True when no partial frame or fragmented message is buffered."""
        return not self._buf and not self._frag

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Yield the complete frames now available; keep the remainder for later."""
        buf = self._buf + data if self._buf else data
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if ln >> 63:
                    raise ValueError("64-bit frame length with the top bit set")
                hl = 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            end = pos + hl + ln
            if end > n:
                break
            start = pos + hl
            if masked:
                mask = buf[start - 4 : start]
                payload = _xor(buf[start:end], mask)
                frame: Frame = (b0 & 0x0F, payload, 0, ln)
            else:
                frame = (b0 & 0x0F, buf, start, end)
            pos = end
            out = self._defragment(b0 & 0x80, frame)
            if out is not None:
                yield out
        self._buf = buf[pos:] if pos < n else b""

    def _defragment(self, fin: int, frame: Frame) -> Frame | None:
        op, buf, start, end = frame
        if op >= OP_CLOSE:  # control frames may interleave with fragments
            return frame
        if op == OP_CONT:
            self._frag.append(buf[start:end])
            if not fin:
                return None
            whole = b"".join(self._frag)
            self._frag = []
            return (self._frag_op, whole, 0, len(whole))
        if not fin:
            self._frag_op = op
            self._frag = [buf[start:end]]
            return None
        return frame
