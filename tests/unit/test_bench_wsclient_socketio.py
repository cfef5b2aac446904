"""The load client's Socket.IO mode, driven byte by byte (pure logic, no sockets).

The bench's python-socketio adapter needs the raw client to do Engine.IO v4's open,
the Socket.IO namespace connect, an acked room join, answer Engine.IO pings with `3`
(not by echoing, as for Centrifugo's `{}`) and count `42["pub",{...}]` deliveries by
their seq. The smoke test covers it against the real server; pings come every 25 s
there, so the ping answer is checked here.
"""

from __future__ import annotations

import asyncio

from bench.publisher import make_payload
from bench.servers import SocketIOAdapter
from bench.wsclient import BenchClient, Counters
from bench.wsframes import OP_TEXT, accept_for, new_key, server_frame


class RecordingTransport:
    """Collects what the client writes (a stand-in for the socket: pure logic here)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def texts(self) -> list[bytes]:
        """The payloads of the masked text frames written since the upgrade request."""
        out = []
        for frame in self.written[1:]:
            assert frame[0] == 0x80 | OP_TEXT and frame[1] & 0x80 and frame[1] & 0x7F < 126
            n, mask = frame[1] & 0x7F, frame[2:6]
            out.append(bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6 : 6 + n])))
        return out


def _text(payload: bytes) -> bytes:
    return server_frame(OP_TEXT, payload)


async def test_socketio_handshake_ping_and_delivery() -> None:
    adapter = SocketIOAdapter()
    counters = Counters()
    key = new_key()
    client = BenchClient(b"GET ...\r\n\r\n", key, adapter.handshake(1), adapter.app_ping,
                         counters, app_pong=adapter.app_pong)
    transport = RecordingTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key) + b"\r\n\r\n")
    # The Engine.IO open packet arrives in the same read as the 101.
    client.data_received(head + _text(b'0{"sid":"e1","upgrades":[],"pingInterval":25000}'))
    assert transport.texts() == [b"40"]
    client.data_received(_text(b'40{"sid":"s1"}'))
    assert transport.texts() == [b"40", b'421["join"]']
    assert not client.ready.done()
    client.data_received(_text(b'431["ok"]'))
    await asyncio.wait_for(client.ready, 1)

    counters.reset(7, 1)
    client.data_received(_text(b"2"))  # Engine.IO ping
    assert transport.texts()[-1] == b"3" and counters.pings == 1
    payload = make_payload(7, 100, adapter.frame_overhead)
    frame = b'42["pub",' + payload + b"]"
    assert len(frame) == 100  # the publisher pads to the same frame size as elsewhere
    client.data_received(_text(frame))
    assert counters.ledger.received == 1 and counters.ledger.counts[0] == 1
    assert not transport.closed
