"""The load generator's HTTP-stream client: SSE and HTTP-streaming subscribers.

One `StreamClient` per connection: it writes one HTTP request (the adapter's, with the
connect — and for bidirectional emulation the subscribe — inside), checks the 200, waits
until the body shows the adapter's ready marker (the subscribe reply, or the uni connect
push with its subscriptions), then counts every delivered publication like the WebSocket
client does (`"t":<ns>,"s":<seq>` found with `bytes.find`, no JSON parse) in the shared
`Counters`.

Both SSE events (``data: …\\n\\n``) and HTTP-stream lines end in a newline, so a read is
scanned only up to its last newline; a publication split across reads waits for the rest.

Error handling: a non-200 answer, a body that ends, or a lost connection resolves
`ready` with an exception (if still pending) and counts in `Counters.closed`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import cast

from bench.wsclient import _IP_BIND_ADDRESS_NO_PORT, Counters


class StreamClient(asyncio.Protocol):
    """One streamed HTTP response: request, 200, ready marker, then count deliveries."""

    def __init__(self, request: bytes, ready_marker: bytes, counters: Counters) -> None:
        self.request = request
        self.ready_marker = ready_marker
        self.counters = counters
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head: bytes | None = b""  # None once the response head is read
        self._tail = b""  # bytes after the last newline of the previous read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            data = self._response_head(data)
            if not data:
                return
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"\n") + 1
        self._tail = data[end:]
        if not end:
            return
        if not self.ready.done():
            if data.find(self.ready_marker, 0, end) < 0:
                return  # the connect reply, a ping: not subscribed yet
            self.ready.set_result(None)  # replies hold no "t": they are never counted
        self._deliver(data, end, time.time_ns())

    def _response_head(self, data: bytes) -> bytes:
        assert self._head is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 16384:
                self._fail(ConnectionError("oversized response head"))
            return b""
        status = self._head.split(b"\r\n", 1)[0]
        rest = self._head[end + 4:]
        self._head = None
        if b" 200 " not in status + b" ":
            self._fail(ConnectionError(f"stream refused: {status!r}"))
            return b""
        return rest

    def _deliver(self, buf: bytes, end: int, now: int) -> None:
        c = self.counters
        c.messages += 1
        record_seq = c.ledger.record
        record_lat = c.hist.record
        i = buf.find(b'"t":', 0, end)
        while i >= 0:
            j = buf.find(b",", i, end)
            k = buf.find(b",", j + 5, end)
            record_lat((now - int(buf[i + 4 : j])) // 1000)
            record_seq(int(buf[j + 5 : k]))
            i = buf.find(b'"t":', k, end)


async def open_stream(loop: asyncio.AbstractEventLoop, host: str, port: int, request: bytes,
                      ready_marker: bytes, source: str | None, counters: Counters,
                      timeout: float) -> StreamClient:
    """Connect from `source`, send `request`, wait for `ready_marker` in the body.

    Error handling: raises OSError/ConnectionError/TimeoutError on failure; the socket is
    closed in every failure path.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client: StreamClient | None = None
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            client = StreamClient(request, ready_marker, counters)
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
