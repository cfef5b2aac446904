"""The WebSocket endpoint: turns a socket into a connection actor and its frames into messages.

By default (``websocket.detach: true``) the upgrade detaches the socket from aiohttp
(``broker.transport.wsdirect``): its frames are parsed and told to the actor as they
arrive, with no task, request or handler frame kept per connection. With
``websocket.detach: false`` a reader coroutine on aiohttp's ``WebSocketResponse`` tells
every incoming message to the connection actor, and the socket's end too. Writes never
pass through here — they leave through the connection's outbox.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from broker.connection.actor import Frame, SocketClosed
from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.protocol import PROTOBUF_SUBPROTOCOL, codes
from broker.transport.common import connect_allowed, origin_allowed, start_connection
from broker.transport.keys import NODE
from broker.transport.link import WebSocketLink
from broker.transport.wsdirect import DETACHED, prepare_detached

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.ws")

SUBPROTOCOLS = ("centrifuge-protobuf", "centrifuge-json")

__all__ = ["SUBPROTOCOLS", "origin_allowed", "websocket_handler"]


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    config = node.config
    if node.draining:
        raise web.HTTPServiceUnavailable(text="node is draining")
    if not origin_allowed(config.client.allowed_origins, request.headers.get("Origin"),
                          request.headers.get("Host")):
        log.info("refused WebSocket from origin %r", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="origin not allowed")
    # aiohttp refuses a message of exactly max_msg_size bytes; the config names the
    # largest message allowed (Centrifugo's meaning), hence + 1.
    max_msg_size = config.websocket.message_size_limit + 1
    if not config.websocket.detach:
        ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, max_msg_size=max_msg_size,
                                   autoping=True, compress=False)
        return await _aiohttp_reader(request, ws, node)
    direct, chosen = prepare_detached(request, SUBPROTOCOLS, max_msg_size, node.runtime)
    # From here on aiohttp holds nothing of this connection: the request, its headers,
    # and this handler's frame and task go once it returns.
    if not connect_allowed(node, request):
        # Refused before any actor exists; 3013 makes the SDK back off and retry.
        direct.close(codes.DISCONNECT_TOO_MANY_REQUESTS)
        return DETACHED
    direct.delivery = WS_PROTOBUF if chosen == PROTOBUF_SUBPROTOCOL else WS_JSON
    ref = start_connection(node, direct, request.remote or "", request.headers)
    direct.attach(ref)
    return DETACHED


async def _aiohttp_reader(request: web.Request, ws: web.WebSocketResponse,
                          node: Node) -> web.StreamResponse:
    """The socket stays aiohttp's: this coroutine reads it for the connection's life."""
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    if not connect_allowed(node, request):
        # Refused before any actor exists; 3013 makes the SDK back off and retry.
        limited = codes.DISCONNECT_TOO_MANY_REQUESTS
        await ws.close(code=limited.code, message=limited.reason.encode())
        return ws
    delivery = WS_PROTOBUF if ws.ws_protocol == PROTOBUF_SUBPROTOCOL else WS_JSON
    link = WebSocketLink(ws, transport, delivery, node.spawn)
    ref = start_connection(node, link, request.remote or "", request.headers)
    runtime = node.runtime
    tell = runtime.tell
    try:
        async for message in ws:
            kind = message.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                tell(ref, Frame(message.data))  # the JSON codec reads str as is
            elif kind is WSMsgType.ERROR:
                log.info("websocket %s: %r", ref, ws.exception())
                break
    finally:
        if not runtime.closed:
            tell(ref, SocketClosed(ws.close_code))
    return ws
