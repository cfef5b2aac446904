"""A WebSocket after its upgrade, read without aiohttp's request machinery.

aiohttp keeps a WebSocket's whole HTTP request alive for the socket's life: the
request handler's two tasks and their frames, the parsed request line and headers, the
``Request``, the ``WebSocketResponse`` with its reader queue and writer, and the
``RequestHandler`` protocol with its HTTP parser — about 9 KB per idle connection, most
of what a connection costs. Chorus writes to the transport itself (the outbox), so after
the upgrade it needs none of that: ``DirectWebSocket`` becomes the transport's protocol
and the sink of aiohttp's own frame parser (``WebSocketReader``, which checks RFC 6455:
masking, fragments, UTF-8, close codes, the size limit), and the request handler returns
at once, letting aiohttp drop everything it held for the request.

What aiohttp's ``receive()`` did, this does in its place, with the same codes:
text and binary messages are told to the connection actor as ``Frame``; a client ping
is answered with a pong; a client close frame is echoed (1000) and the socket closed; a
protocol error (1002, 1007, 1009) closes with its code; a socket gone without a close
frame (end of stream or reset) is 1006, as aiohttp reports it. One check aiohttp's
reader lacks is added: a client close frame carrying 1006 is a protocol error (1002).
A server close (``close``) writes the close frame behind what the outbox wrote and closes
the transport, which sends what is buffered first — as aiohttp's ``close()`` did while a
reader was waiting. The actor is told ``SocketClosed`` once, when the TCP connection is
gone.

The upgrade itself is checked and answered by ``broker.transport.wsupgrade`` (aiohttp's
rules and texts), so no ``WebSocketResponse`` is built for a detached socket at all.

Error handling: a handshake aiohttp would refuse raises its HTTP error before the socket
changes hands (aiohttp answers it); a client gone before the upgrade is a
ConnectionResetError, which aiohttp handles as a lost connection.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.http_websocket import WebSocketError

from broker.connection.actor import Frame, SocketClosed
from broker.connection.framing import WS_JSON
from broker.transport.wsupgrade import upgrade

if TYPE_CHECKING:
    from actors import ActorRef, Runtime
    from broker.connection.framing import Delivery
    from broker.protocol.codes import DisconnectCode

_TEXT, _BINARY, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
_PING = WSMsgType.PING
_CODE = struct.Struct("!H")
_OK, _PROTOCOL, _ABNORMAL, _INTERNAL = 1000, 1002, 1006, 1011


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked close frame (a control frame carries at most 125 bytes)."""
    payload = _CODE.pack(code) + reason[:123]
    return bytes((0x88, len(payload))) + payload


def pong_frame(payload: bytes) -> bytes:
    """The unmasked pong answering a ping's ``payload`` (at most 125 bytes: the parser
    refuses longer control frames)."""
    return bytes((0x8A, len(payload))) + payload


class DirectWebSocket(WebSocketDataQueue):
    """The protocol of one upgraded socket, and the queue its frame parser feeds.

    The parser's queue type is compiled (``WebSocketDataQueue``); this subclass never
    buffers (every message is handled as it is parsed), so its size stays 0 and the
    parser never stalls; the base's own buffer is never made.

    It is also the connection actor's ``Link`` (``broker.transport.link``): one object
    per connection instead of two.
    """

    __slots__ = ("_early", "_parser", "_ref", "_runtime", "close_code", "closing",
                 "delivery", "transport", "writer")
    name = "websocket"
    emulation = False
    unidirectional = False
    disconnect_push = False

    def __init__(self, transport: asyncio.Transport, max_msg_size: int,
                 runtime: Runtime) -> None:
        # No super().__init__(): its deque, waiter and flow-control state are unused.
        self.transport: asyncio.Transport | None = transport
        self.writer: asyncio.BaseTransport = transport
        self.delivery: Delivery = WS_JSON  # set once the subprotocol is chosen
        self._runtime = runtime
        self._ref: ActorRef | None = None
        self._early: list[Frame] | None = []  # frames before ``attach``
        self._parser: Any = WebSocketReader(self, max_msg_size, False, True)
        self.close_code: int | None = None
        self.closing = False  # a close frame was sent

    def attach(self, ref: ActorRef) -> None:
        """Tell this actor what the client sends from now on, starting with the frames
        that came before it existed (behind the upgrade request, in order)."""
        self._ref = ref
        early, self._early = self._early, None
        tell = self._runtime.tell
        for frame in early or ():
            if self.closing:
                return
            tell(ref, frame)

    @property
    def closed(self) -> bool:
        transport = self.transport
        return self.closing or transport is None or transport.is_closing()

    def close(self, code: DisconnectCode | None) -> None:
        """Close with ``code`` (None: 3000 "connection closed"); never blocks; idempotent."""
        if code is None:
            self._close(3000, b"connection closed")
        else:
            self._close(code.code, code.reason.encode())

    def _close(self, code: int, reason: bytes = b"") -> None:
        transport = self.transport
        if self.closing or transport is None:
            return
        self.closing = True
        if self.close_code is None:
            self.close_code = code
        if not transport.is_closing():
            transport.write(close_frame(code, reason))
            transport.close()  # after what is buffered, as a graceful close

    # -- asyncio protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        pass  # set_protocol does not call it; the transport came with __init__

    def data_received(self, data: bytes) -> None:
        if not self.closing:
            self._parser.feed_data(data)

    def eof_received(self) -> None:
        # The client ended its side without a close frame: the transport closes (this
        # returns None) and the actor hears of it with 1006 (abnormal closure), as from
        # aiohttp, which fails its reader with ConnectionResetError on any such loss.
        if self.close_code is None:
            self.close_code = _ABNORMAL

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.close_code is None:  # a reset: no close frame, no end of stream
            self.close_code = _ABNORMAL
        self.transport = None
        self._parser = None  # the parser and this queue refer to each other
        self.closing = True
        ref, self._ref = self._ref, None
        if ref is not None and not self._runtime.closed:
            self._runtime.tell(ref, SocketClosed(self.close_code))

    def pause_writing(self) -> None:
        """The outbox watches the transport's buffer itself (``write_watch``)."""

    def resume_writing(self) -> None:
        pass

    # -- the parser's queue ------------------------------------------------------------
    def feed_data(self, msg: Any, size: int) -> None:
        kind = msg[0]
        if kind is _TEXT or kind is _BINARY:
            if self.closing:
                return
            ref = self._ref
            if ref is not None:
                self._runtime.tell(ref, Frame(msg[1]))  # str for text: the JSON codec reads it
            elif self._early is not None:
                self._early.append(Frame(msg[1]))
        elif kind is _PING:
            transport = self.transport
            if transport is not None and not self.closing:
                transport.write(pong_frame(msg[1]))
        elif kind is _CLOSE:
            if msg[1] == _ABNORMAL:
                # RFC 6455 7.4.1: 1006 is never sent; aiohttp's parser lets it through.
                self.close_code = _PROTOCOL
                self._close(_PROTOCOL)
                return
            self.close_code = msg[1]
            self._close(_OK)
        # PONG: nothing to do (the server's pings are protocol messages, not frames)

    def feed_eof(self) -> None:
        self.eof_received()

    def set_exception(self, exc: BaseException, exc_cause: Any = None) -> None:
        code = exc.code if isinstance(exc, WebSocketError) else _INTERNAL
        self.close_code = code
        self._close(code)


class _Detached(web.StreamResponse):
    """What the handler of a detached WebSocket returns: aiohttp has nothing to send."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


DETACHED = _Detached(status=101)  # what an access log shows: the upgrade


def prepare_detached(request: web.Request, protocols: tuple[str, ...], max_msg_size: int,
                     runtime: Runtime, kind: type[DirectWebSocket] = DirectWebSocket,
                     ) -> tuple[DirectWebSocket, str | None]:
    """Upgrade ``request`` and take the socket away from aiohttp, to a new ``kind`` (a
    subclass may map close codes, as the Pusher endpoint's does); returns it and the
    subprotocol chosen from ``protocols``.

    The handshake is checked and answered by ``broker.transport.wsupgrade`` (aiohttp's
    rules, no ``WebSocketResponse``). The socket's protocol is switched before the 101
    answer is written, so every byte the client sends after it reaches the
    ``DirectWebSocket``; bytes aiohttp read behind the upgrade request (a client that
    pipelines its first frames) are handed to it first. aiohttp's ``RequestHandler``
    then lets go of the socket (its ``connection_lost`` without a transport unregisters
    it from the server, cancels its keep-alive timer and closes nothing). The handler
    must return ``DETACHED`` after this.

    Error handling: a refused handshake raises aiohttp's HTTP error before anything is
    changed or written, so aiohttp answers it; ConnectionResetError when the client left
    before the upgrade.
    """
    transport = request.transport
    protocol = request.protocol
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client left before the upgrade")
    answer, chosen = upgrade(request, protocols)
    direct = kind(transport, max_msg_size, runtime)
    transport.set_protocol(cast(asyncio.BaseProtocol, direct))
    transport.write(answer)
    tail = getattr(protocol, "_message_tail", b"")
    protocol._message_tail = b""
    # aiohttp (3.13+) stops reading while a large tail waits for its parser.
    paused = getattr(protocol, "_buffer_paused", False)
    protocol.transport = None
    protocol.connection_lost(None)
    if paused:
        transport.resume_reading()
    if tail:
        direct.data_received(tail)
    return direct, chosen
