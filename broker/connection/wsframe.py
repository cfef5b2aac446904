"""Server-to-client WebSocket data frames (RFC 6455: unmasked, final), built by hand.

Kept apart from the outbox so the framings (``broker.connection.framing``) and the
outbox can both use it without importing each other.
"""

from __future__ import annotations

import struct

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def ws_header(length: int, binary: bool) -> bytes:
    """The header of one unmasked, final WebSocket data frame (server to client)."""
    first = 0x82 if binary else 0x81
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEADER_16.pack(first, 126, length)
    return _HEADER_64.pack(first, 127, length)


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """A complete WebSocket data frame carrying ``payload``."""
    return ws_header(len(payload), binary) + payload
