"""The first protocol of every connection to ``chorus serve``: a plain WebSocket upgrade
is answered here, everything else goes on to aiohttp as if it had been there all along.

aiohttp gives each connection a ``RequestHandler`` (its parser, a keep-alive timer, a
task running ``start``), and each request a ``BaseRequest``, a router lookup, the
middleware chain and a response pass -- about 80 µs of a detached WebSocket's connect,
for a socket that leaves aiohttp right after its upgrade (``broker.transport.wsdirect``).
``UpgradeProtocol`` reads the request head itself; when it is a WebSocket upgrade of the
client endpoint in the plainest form (``GET <path> HTTP/1.1``, printable ASCII header
lines, each name once, no body, no ``Expect``) and the node would accept it as it is
(detached sockets, not draining, the origin allowed, under the per-IP connect rate, no
proxy asking for request headers), the socket is upgraded and handed to its connection
actor at once: the same checks and 101 answer (``broker.transport.wsupgrade``), the same
``DirectWebSocket``, the same socket options (``TCP_NODELAY``, keep-alive).

Anything else -- another path, a query string, a refusal, a malformed or unusual head,
a head not complete in the first read -- is handed to aiohttp untouched: a
``RequestHandler`` is made, given the transport and fed the bytes read so far, and
answers as it always did (a refusal with aiohttp's status and text). A connection that
sends nothing is closed after aiohttp's keep-alive timeout, as aiohttp would.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.tcp_helpers import tcp_keepalive, tcp_nodelay

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.protocol import PROTOBUF_SUBPROTOCOL, codes
from broker.transport.common import origin_allowed, start_connection
from broker.transport.ws import SUBPROTOCOLS
from broker.transport.wsdirect import DirectWebSocket
from broker.transport.wsupgrade import handshake

if TYPE_CHECKING:
    from broker.transport.keys import ChorusState

__all__ = ["UpgradeProtocol"]

HEAD_MAX = 8190  # aiohttp's line and field limit: a longer head is aiohttp's to judge
# The whole head, request line and header lines, in the one form taken here: a token
# for each name, printable ASCII (and tabs) for each value; anything else is aiohttp's.
_HEAD = re.compile(rb"GET (/[!-~]*) HTTP/1\.1\r\n"
                   rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~]*\r\n){0,100})\r\n")
_UPGRADE, _CONNECTION = "upgrade", "connection"
_NOT_HERE = frozenset(("content-length", "transfer-encoding", "expect"))


class UpgradeProtocol(asyncio.Protocol):
    """One new connection until its request head is read (see the module docstring)."""

    __slots__ = ("_handler_factory", "_idle", "_path", "_state", "_transport")

    def __init__(self, handler_factory: Callable[[], asyncio.Protocol], state: ChorusState,
                 path: str, keepalive_timeout: float) -> None:
        self._handler_factory = handler_factory
        self._state = state
        self._path = path
        self._transport: asyncio.Transport | None = None
        self._idle: Any = keepalive_timeout  # the timer once connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        timeout = self._idle
        self._idle = (asyncio.get_running_loop().call_later(timeout, self._expire)
                      if timeout > 0 else None)

    def _expire(self) -> None:
        """Nothing came within the keep-alive timeout: closed, as aiohttp closes it."""
        self._idle = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if not self._upgraded(data):
            self._to_aiohttp(data)

    def eof_received(self) -> bool | None:
        handler = self._to_aiohttp(b"")
        return handler.eof_received() if handler is not None else None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._transport = None

    def _to_aiohttp(self, data: bytes) -> asyncio.Protocol | None:
        """Hand the connection to a new aiohttp ``RequestHandler``, with ``data``."""
        transport, self._transport = self._transport, None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if transport is None or transport.is_closing():
            return None
        handler = self._handler_factory()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)
        return handler

    def _upgraded(self, data: bytes) -> bool:
        """Upgrade here if ``data`` starts with a head this takes (see module docstring)."""
        match = _HEAD.match(data, 0, HEAD_MAX + 4)  # a longer head is aiohttp's
        if match is None or match[1].decode() != self._path:
            return False
        headers: dict[str, str] = {}
        for line in match[2].decode().split("\r\n")[:-1]:
            name, _, value = line.partition(":")
            name = name.lower()
            if name in headers or name in _NOT_HERE:
                return False
            headers[name] = value.strip(" \t")
        node = self._state._node  # None while starting: aiohttp answers 503
        transport = self._transport
        if (node is None or node.draining or not node.config.websocket.detach
                or node.proxies.forwarded or transport is None or transport.is_closing()):
            return False
        config = node.config
        if not origin_allowed(config.client.allowed_origins, headers.get("origin"),
                              headers.get("host")):
            return False
        upgrade, connection = headers.get(_UPGRADE), headers.get(_CONNECTION)
        upgrades = upgrade is not None and connection is not None and any(
            token.strip().lower() == "upgrade" for token in connection.split(","))
        peer = transport.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, list | tuple) else (
            None if peer is None else str(peer))
        try:
            answer, chosen = handshake(upgrade, upgrades, connection,
                                       headers.get("sec-websocket-protocol"),
                                       headers.get("sec-websocket-version"),
                                       headers.get("sec-websocket-key"), (1, 1), remote,
                                       SUBPROTOCOLS)
        except web.HTTPBadRequest:
            return False  # aiohttp answers it, with its text
        self._transport = None
        tcp_nodelay(transport, True)  # what aiohttp's protocol sets on every connection
        tcp_keepalive(transport)
        direct = DirectWebSocket(transport, config.websocket.message_size_limit + 1,
                                 node.runtime)
        transport.set_protocol(cast(asyncio.BaseProtocol, direct))
        transport.write(answer)
        tail = data[match.end():]
        if tail:  # frames the client sent right behind its upgrade request
            direct.data_received(tail)
        # From here on as ``websocket_handler`` after its ``prepare_detached``.
        if not node.connect_limiter.allow(remote or "", time.monotonic()):
            direct.close(codes.DISCONNECT_TOO_MANY_REQUESTS)  # the SDK backs off
            return True
        direct.delivery = WS_PROTOBUF if chosen == PROTOBUF_SUBPROTOCOL else WS_JSON
        direct.attach(start_connection(node, direct, remote or ""))
        return True
