"""Unidirectional transports, for clients without an SDK (Centrifugo's uni protocol).

The client sends one ``ConnectRequest`` (JSON: ``{"token": …, "subs": {…}, …}``) and then
only reads: the connect push ``{"connect": {…}}`` with the server-side subscriptions
(token ``channels``, the personal channel, later API ``subscribe``), then pushes —
``{"channel": …, "pub": {…}}``, join/leave, subscribe/unsubscribe, a final
``{"disconnect": {…}}`` — and ``{}`` pings every ``client.ping_interval``; no pong is
expected. A refused connect ends the connection with Centrifugo's disconnect for the
error (109/110 → 3005, 111 → 3013, 103 → 3507, others 3004).

* ``GET /connection/uni_websocket`` — the request in ``cf_connect`` or as the first
  message; one push per text message (``uni_websocket.join_push_messages``: several,
  newline-joined). Later messages are read and dropped.
* ``GET /connection/uni_sse?cf_connect=…`` (or POST with the request as the body) — one
  push per Server-Sent Event; no ``cf_connect`` is an empty request.
* ``POST /connection/uni_http_stream`` — the request as the body; one push per line.

Error handling: a malformed connect request is 400 before anything starts (or, when it
is a WebSocket's first message, a close with 3501 bad request).
"""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web

from broker.connection.actor import SocketClosed, UniConnect
from broker.connection.framing import UNI_SSE, UNI_STREAM, UNI_WS, UNI_WS_JOINED
from broker.protocol import ProtocolError, codes
from broker.protocol.uni import decode_connect_request
from broker.transport.common import (
    admit,
    connect_allowed,
    preflight,
    read_body,
    start_connection,
)
from broker.transport.keys import NODE
from broker.transport.link import WebSocketLink
from broker.transport.streams import CONNECT_PARAM, serve_stream

log = logging.getLogger("chorus.uni")


def _connect_request(data: bytes | str) -> UniConnect:
    try:
        return UniConnect(decode_connect_request(data))
    except ProtocolError as error:
        raise web.HTTPBadRequest(text=f"invalid connect request: {error}") from None


async def uni_sse_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    cors = admit(request, node, "uni_sse")
    if request.method == "GET":
        first = _connect_request(request.query.get(CONNECT_PARAM, ""))
    elif request.method == "POST":
        first = _connect_request(await read_body(
            request, node.config.uni_sse.max_request_body_size,
            "uni_sse.max_request_body_size"))
    else:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    return await serve_stream(request, node, cors, name="uni_sse", delivery=UNI_SSE,
                              emulation=False, unidirectional=True, first=first,
                              event_stream=True)


async def uni_http_stream_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    if request.method == "OPTIONS":
        return preflight(request, node, "uni_http_stream")
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST", "OPTIONS"])
    cors = admit(request, node, "uni_http_stream")
    first = _connect_request(await read_body(
        request, node.config.uni_http_stream.max_request_body_size,
        "uni_http_stream.max_request_body_size"))
    return await serve_stream(request, node, cors, name="uni_http_stream",
                              delivery=UNI_STREAM, emulation=False, unidirectional=True,
                              first=first, event_stream=False)


async def uni_websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    config = node.config.uni_websocket
    admit(request, node, "uni_websocket")
    param = request.query.get(CONNECT_PARAM, "")
    first = _connect_request(param) if param else None
    ws = web.WebSocketResponse(max_msg_size=config.message_size_limit + 1, autoping=True,
                               compress=False)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    if not connect_allowed(node, request):
        limited = codes.DISCONNECT_TOO_MANY_REQUESTS
        await ws.close(code=limited.code, message=limited.reason.encode())
        return ws
    link = WebSocketLink(ws, transport, UNI_WS_JOINED if config.join_push_messages else UNI_WS,
                         node.spawn, name="uni_websocket", unidirectional=True,
                         disconnect_push=not config.disable_disconnect_push)
    ref = start_connection(node, link, request.remote or "", request.headers)
    runtime = node.runtime
    if first is not None:
        runtime.tell(ref, first)
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or first is not None:
                continue  # after the connect request a uni client has nothing to say
            try:
                first = UniConnect(decode_connect_request(message.data))
            except ProtocolError as error:
                log.info("uni_websocket: invalid connect request: %s", error)
                bad = codes.DISCONNECT_BAD_REQUEST
                await ws.close(code=bad.code, message=bad.reason.encode())
                break
            runtime.tell(ref, first)
    finally:
        if not runtime.closed:
            runtime.tell(ref, SocketClosed(ws.close_code))
    return ws
