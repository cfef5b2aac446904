"""The Pusher WebSocket endpoint, ``/app/{key}?protocol=7``: one Pusher connection actor
per socket, fed the socket's messages (as ``broker.transport.ws`` does for Centrifugo).

Refusals happen before any actor exists, as Pusher does them: a ``pusher:error`` event
with the code, then a close frame with the same code — unknown key 4001, no protocol
4008, a protocol other than 5-7 4007, the app over ``max_connections`` 4004 (counted
cluster wide, see ``state.cluster_connections``), a draining node 4200 (reconnect
elsewhere at once). A refusal is decided before the upgrade and keeps aiohttp's
``WebSocketResponse`` to say it; an accepted socket is detached from aiohttp after the
upgrade (``broker.transport.wsdirect``) unless ``websocket.detach: false``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import orjson
from aiohttp import WSMsgType, web

from actors import ChildSpec, Restart
from broker.connection.actor import Frame, SocketClosed
from broker.names import CONNECTIONS_ID
from broker.protocol.codes import DisconnectCode
from broker.pusher.actor import PusherConnectionActor
from broker.pusher.codec import PUSHER_WS, event
from broker.pusher.state import CLOSE, cluster_connections, new_socket_id, pusher_close
from broker.transport.common import connect_allowed, origin_allowed
from broker.transport.keys import NODE
from broker.transport.link import WebSocketLink
from broker.transport.wsdirect import DETACHED, DirectWebSocket, prepare_detached

if TYPE_CHECKING:
    from actors import ActorRef
    from broker.config.pusher import PusherApp
    from broker.node import Node
    from broker.transport.link import Link

log = logging.getLogger("chorus.pusher")

SUPPORTED_PROTOCOLS = (5, 6, 7)


class PusherLink(WebSocketLink):
    """A WebSocket under a Pusher connection: closes carry Pusher's codes."""

    __slots__ = ()

    def close(self, code: DisconnectCode | None) -> None:
        super().close(pusher_close(code))


class PusherDirectWebSocket(DirectWebSocket):
    """A detached WebSocket under a Pusher connection: closes carry Pusher's codes."""

    __slots__ = ()
    name = "pusher"

    def close(self, code: DisconnectCode | None) -> None:
        super().close(pusher_close(code))


async def pusher_websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    config = node.config
    if not origin_allowed(config.client.allowed_origins, request.headers.get("Origin"),
                          request.headers.get("Host")):
        raise web.HTTPForbidden(text="origin not allowed")
    max_msg_size = config.websocket.message_size_limit + 1
    ws = web.WebSocketResponse(max_msg_size=max_msg_size, autoping=True, compress=False)
    app = config.pusher.by_key(request.match_info["key"])
    refusal = _refusal(request, node, app)
    if refusal is not None or app is None:
        await ws.prepare(request)
        if request.transport is None:
            return ws
        refusal = refusal or CLOSE["app_missing"]
        log.info("pusher socket refused: %d %s", refusal.code, refusal.reason)
        await ws.send_str(event("pusher:error", raw_data=orjson.dumps(
            {"code": refusal.code, "message": refusal.reason})).decode())
        await ws.close(code=refusal.code, message=refusal.reason.encode())
        return ws
    if not config.websocket.detach:
        return await _aiohttp_reader(request, ws, node, app)
    # No subprotocols: as the WebSocketResponse above (it is not prepared here).
    direct, _ = prepare_detached(request, (), max_msg_size, node.runtime,
                                 PusherDirectWebSocket)
    direct.delivery = PUSHER_WS
    direct.attach(_start(node, direct, request, app))
    return DETACHED


def _start(node: Node, link: Link, request: web.Request, app: PusherApp) -> ActorRef:
    """The socket's Pusher connection actor, started under the connections supervisor."""
    socket_id = new_socket_id()
    factory = partial(PusherConnectionActor, node, link, request.remote or "", socket_id, app)
    return node.runtime.start_child(CONNECTIONS_ID, ChildSpec(
        socket_id, factory, restart=Restart.TEMPORARY, shutdown=2.0, kind="connection"))


async def _aiohttp_reader(request: web.Request, ws: web.WebSocketResponse, node: Node,
                          app: PusherApp) -> web.StreamResponse:
    """The socket stays aiohttp's: this coroutine reads it for the connection's life."""
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    ref = _start(node, PusherLink(ws, transport, PUSHER_WS, node.spawn, name="pusher"),
                 request, app)
    runtime = node.runtime
    tell = runtime.tell
    try:
        async for message in ws:
            kind = message.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                tell(ref, Frame(message.data))
            elif kind is WSMsgType.ERROR:
                log.info("pusher websocket %s: %r", ref, ws.exception())
                break
    finally:
        if not runtime.closed:
            tell(ref, SocketClosed(ws.close_code))
    return ws


def _refusal(request: web.Request, node: Node, app: PusherApp | None) -> DisconnectCode | None:
    """Why this socket may not start, in Pusher's codes; None when it may."""
    if app is None:
        return CLOSE["app_missing"]
    protocol = request.query.get("protocol")
    if not protocol:
        return CLOSE["no_version"]
    if not protocol.isdigit() or int(protocol) not in SUPPORTED_PROTOCOLS:
        return CLOSE["version"]
    if node.draining:
        return CLOSE["reconnect"]
    if not connect_allowed(node, request):
        return CLOSE["capacity"]
    limit = app.max_connections
    if limit and cluster_connections(node, app.id) >= limit:
        return CLOSE["over_quota"]
    return None
