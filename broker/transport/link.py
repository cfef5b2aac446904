"""A connection's link to its client: what the connection actor needs of a transport.

The connection actor is the same for every transport; the link tells it how replies are
encoded and framed (``delivery``), where the outbox writes (``writer``, an asyncio write
transport), what kind of session it is (``emulation``: commands arrive over
``/emulation``; ``unidirectional``: pushes only) and how to end it (``close``).

Two kinds exist:

* ``WebSocketLink`` — bidirectional and unidirectional WebSocket. The disconnect code
  travels in the close frame (the unidirectional one also gets a disconnect push first,
  unless ``uni_websocket.disable_disconnect_push``).
* ``StreamLink`` — a streamed HTTP response (HTTP streaming, SSE, and their
  unidirectional variants). An HTTP body cannot carry a close code, so the connection
  writes a disconnect push, then ``close`` ends the handler, and with it the response
  and the TCP connection (the body is close-delimited).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from broker.connection.framing import Delivery
    from broker.protocol.codes import DisconnectCode

Spawn = Callable[[Coroutine[Any, Any, Any]], None]

SLOW_CODE = 3008  # codes.DISCONNECT_SLOW: the outbox overflowed


class Link(Protocol):
    """The transport under one connection actor (see the module docstring)."""

    name: str  # "websocket", "http_stream", "sse", "uni_websocket", "uni_sse", ...
    delivery: Delivery
    writer: asyncio.BaseTransport
    emulation: bool
    unidirectional: bool
    disconnect_push: bool  # write a disconnect push before closing

    @property
    def closed(self) -> bool:
        """The socket is closed or being closed."""
        ...

    def close(self, code: DisconnectCode | None) -> None:
        """Close the connection (with ``code`` where the transport can carry one; None:
        3000 "connection closed"). Never blocks; idempotent."""
        ...


class WebSocketLink:
    """A WebSocket (aiohttp ``WebSocketResponse``) under a connection actor."""

    __slots__ = (
        "_spawn",
        "delivery",
        "disconnect_push",
        "name",
        "unidirectional",
        "writer",
        "ws",
    )
    emulation = False

    def __init__(self, ws: web.WebSocketResponse, writer: asyncio.BaseTransport,
                 delivery: Delivery, spawn: Spawn, *, name: str = "websocket",
                 unidirectional: bool = False, disconnect_push: bool = False) -> None:
        self.ws = ws
        self.writer = writer
        self.delivery = delivery
        self.name = name
        self.unidirectional = unidirectional
        self.disconnect_push = disconnect_push
        self._spawn = spawn

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def close(self, code: DisconnectCode | None) -> None:
        close_code = code.code if code is not None else 3000
        reason = (code.reason if code is not None else "connection closed").encode()
        self._spawn(self.ws.close(code=close_code, message=reason))


class StreamLink:
    """A streamed HTTP response under a connection actor.

    ``done`` is what the request handler waits on: resolved by ``close`` (the server
    ends the session) or by ``client_gone`` (the client went away), after which the
    handler returns and aiohttp closes the connection.
    """

    __slots__ = ("delivery", "done", "emulation", "name", "unidirectional", "writer")
    disconnect_push = True

    def __init__(self, writer: asyncio.BaseTransport, delivery: Delivery, *, name: str,
                 emulation: bool, unidirectional: bool) -> None:
        self.writer = writer
        self.delivery = delivery
        self.name = name
        self.emulation = emulation
        self.unidirectional = unidirectional
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def closed(self) -> bool:
        return self.done.done() or self.writer.is_closing()

    def close(self, code: DisconnectCode | None) -> None:
        if code is not None and code.code == SLOW_CODE:
            # A reader that stopped reading: what is buffered for it will not be read,
            # and a graceful end would wait for it to drain. Drop the connection.
            self.writer.abort()  # type: ignore[attr-defined]
        if not self.done.done():
            self.done.set_result(None)

    def client_gone(self) -> None:
        """The TCP connection was lost (the reader saw EOF)."""
        self.close(None)
