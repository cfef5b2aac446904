"""The load generator's WebSocket client: an asyncio Protocol made for counting deliveries.

One `BenchClient` per connection. It writes the upgrade request, checks the 101, runs the
adapter's handshake steps (send a command, wait for the reply marker), then counts every
delivered publication: it finds `"t":<ns>,"s":<seq>` with `bytes.find` (no JSON parse;
the marker is the adapter's `stamp_marker`: `t\\":` where the payload arrives inside a
JSON string, as Pusher events carry it, `\\"t\\":<ns>,\\"s\\":<seq>`),
records publish-to-receive latency in the shared histogram and the seq in the shared
ledger. All connections of one worker process share one `Counters`.

The receive timestamp is taken once per `data_received` call: frames that arrived in the
same read arrived at the same time as far as the client can tell.

Error handling: a failed upgrade or handshake, a close frame, or a protocol violation
closes the transport and resolves `ready` with an exception (if still pending); a lost
connection is counted in `Counters.closed`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import cast

from bench.latency import DeliveryLedger, LatencyHistogram
from bench.servers import HandshakeStep
from bench.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    check_handshake_response,
    handshake_request,
    mask_frame,
    new_key,
)

# Linux: let connect() pick the source port per 4-tuple instead of per (addr, port), so
# binding a source address does not cap us at one ephemeral range per address.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Counters:
    """Per-process delivery counters shared by every connection of a worker."""

    def __init__(self) -> None:
        self.hist = LatencyHistogram()
        self.ledger = DeliveryLedger()
        self.messages = 0
        self.closed = 0
        self.pings = 0

    def reset(self, base: int, count: int) -> None:
        """Start a new measured window of seqs [base, base + count)."""
        self.hist = LatencyHistogram()
        self.ledger = DeliveryLedger(base, count)
        self.messages = 0
        self.pings = 0


class BenchClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then count deliveries."""

    def __init__(self, request: bytes, key: bytes, steps: list[HandshakeStep],
                 app_ping: bytes | None, counters: Counters, *,
                 app_pong: bytes | None = None, stamp_marker: bytes = b'"t":') -> None:
        self.request = request
        self.key = key
        self.steps = steps
        self.app_ping = app_ping
        self.app_pong = app_pong if app_pong is not None else app_ping
        self.stamp_marker = stamp_marker
        self.counters = counters
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.parser = FrameParser()
        self._head = b""
        self._upgraded = False
        self._step = 0
        self._fast = False  # True once subscribed: deliveries may take the fast path

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counters.closed += 1
        self._fail(ConnectionError(f"connection lost: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def send_text(self, payload: bytes) -> None:
        """Send one masked text frame."""
        assert self.transport is not None
        self.transport.write(mask_frame(OP_TEXT, payload))

    def data_received(self, data: bytes) -> None:
        # Fast path, the common case under fan-out: the read is exactly one small
        # unmasked FIN text frame and nothing is buffered. Skips the parser entirely.
        if self._fast and data[0] == 0x81 and data[1] < 126 and data[1] + 2 == len(data) \
                and self.parser.idle:
            self._deliver(data, 2, len(data), time.time_ns())
            return
        if not self._upgraded:
            data = self._upgrade(data)
            if not data:
                return
        now = time.time_ns()
        try:
            for op, buf, start, end in self.parser.feed(data):
                if op in (OP_TEXT, OP_BINARY):
                    if self._step < len(self.steps):
                        self._handshake_reply(buf[start:end])
                    else:
                        self._deliver(buf, start, end, now)
                elif op == OP_PING:
                    self.transport.write(mask_frame(OP_PONG, buf[start:end]))  # type: ignore[union-attr]
                elif op == OP_CLOSE:
                    self.transport.write(mask_frame(OP_CLOSE, buf[start : start + 2]))  # type: ignore[union-attr]
                    self._fail(ConnectionError("server closed the WebSocket"))
                    return
        except ValueError as exc:
            self._fail(exc)

    def _upgrade(self, data: bytes) -> bytes:
        """Collect the response head; returns bytes that follow it (frames)."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 16384:
                self._fail(ConnectionError("oversized handshake response"))
            return b""
        problem = check_handshake_response(self._head[:end], self.key)
        rest = self._head[end + 4 :]
        self._head = b""
        if problem is not None:
            self._fail(ConnectionError(f"upgrade refused: {problem}"))
            return b""
        self._upgraded = True
        self._next_step()
        return rest

    def _next_step(self) -> None:
        if self._step < len(self.steps):
            payload = self.steps[self._step].payload
            if payload:  # empty: only wait for the server's message (Pusher's greeting)
                self.send_text(payload)
        elif not self.ready.done():
            self._fast = True
            self.ready.set_result(None)

    def _handshake_reply(self, msg: bytes) -> None:
        step = self.steps[self._step]
        if not any(m in msg for m in step.markers):
            if self.app_ping is not None and msg == self.app_ping:
                self.send_text(self.app_pong or self.app_ping)
            return  # not our reply yet (a ping or a push); keep waiting
        if b'"error"' in msg:
            self._fail(ConnectionError(f"handshake step {self._step}: {msg[:200]!r}"))
            return
        self._step += 1
        self._next_step()

    def _deliver(self, buf: bytes, start: int, end: int, now: int) -> None:
        """Count each publication in one message; answer an application ping."""
        c = self.counters
        c.messages += 1
        marker = self.stamp_marker
        skip = len(marker)
        i = buf.find(marker, start, end)
        if i < 0:
            self._maybe_ping(buf[start:end])
            return
        record_seq = c.ledger.record
        record_lat = c.hist.record
        while i >= 0:
            j = buf.find(b",", i, end)
            s = buf.find(b":", j, end) + 1  # past `"s":` (or `\\"s\\":`)
            k = buf.find(b",", s, end)
            record_lat((now - int(buf[i + skip : j])) // 1000)
            record_seq(int(buf[s:k]))
            i = buf.find(marker, k, end)
        if self.app_ping is not None:
            msg = buf[start:end]
            if msg.startswith(self.app_ping + b"\n") or b"\n" + self.app_ping in msg:
                self._maybe_ping(msg)

    def _maybe_ping(self, msg: bytes) -> None:
        ping, pong = self.app_ping, self.app_pong
        if ping is not None and pong is not None and ping in msg.split(b"\n"):
            self.counters.pings += 1
            self.send_text(self.app_pong or ping)


async def open_client(loop: asyncio.AbstractEventLoop, host: str, port: int, path: str,
                      source: str | None, steps: list[HandshakeStep],
                      app_ping: bytes | None, counters: Counters,
                      timeout: float, *, app_pong: bytes | None = None,
                      stamp_marker: bytes = b'"t":') -> BenchClient:
    """Connect from `source` (an address on lo), upgrade, run the handshake.

    Error handling: raises OSError/ConnectionError/TimeoutError on failure; the socket is
    closed in every failure path.
    """
    key = new_key()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client: BenchClient | None = None
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            client = BenchClient(handshake_request(host, port, path, key), key, steps,
                                 app_ping, counters, app_pong=app_pong,
                                 stamp_marker=stamp_marker)
            bound = client
            await loop.create_connection(lambda: bound, sock=sock)
            await client.ready
        return client
    except BaseException:
        if client is not None and client.transport is not None:
            client.transport.abort()
        else:
            sock.close()
        raise
