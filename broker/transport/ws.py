"""The WebSocket endpoint: turns a socket into a connection actor and its frames into messages.

The reader coroutine owns nothing but the socket: every incoming message is told to the
connection actor, and the socket's end is told too. Writes never pass through here —
they leave through the connection's outbox.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import partial
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from actors import ChildSpec, Restart
from broker.connection.actor import ConnectionActor, Frame, SocketClosed
from broker.names import CONNECTIONS_ID
from broker.protocol import codec_for_subprotocol, codes
from broker.transport.keys import NODE

log = logging.getLogger("chorus.ws")

SUBPROTOCOLS = ("centrifuge-protobuf", "centrifuge-json")


def origin_allowed(allowed: tuple[str, ...], origin: str | None, host: str | None) -> bool:
    """Centrifugo's rule for a WebSocket upgrade's ``Origin`` header.

    No ``Origin`` (a non-browser client: the SDKs for Node, Python, Go ...): allowed.
    With ``client.allowed_origins`` set, the Origin must match an entry (``*`` matches
    any). Without it, browsers are held to the same origin: the Origin's host[:port]
    must equal the request's ``Host`` header (case-insensitive, the scheme not
    compared, as Centrifugo's ``checkSameHost``), so a page on another site cannot open
    a socket riding on its visitor's cookies or network position. ``Origin: null``
    (sandboxed frames, ``file:``) has no host and is refused.
    """
    if origin is None:
        return True
    if allowed:
        return "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}
    try:
        origin_host = urlsplit(origin).netloc
    except ValueError:  # a malformed Origin (bad IPv6 brackets, ...)
        return False
    return bool(origin_host) and host is not None and origin_host.lower() == host.lower()


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    config = node.config
    if node.draining:
        raise web.HTTPServiceUnavailable(text="node is draining")
    if not origin_allowed(config.client.allowed_origins, request.headers.get("Origin"),
                          request.headers.get("Host")):
        log.info("refused WebSocket from origin %r", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="origin not allowed")
    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        # aiohttp refuses a message of exactly max_msg_size bytes; the config names the
        # largest message allowed (Centrifugo's meaning), hence + 1.
        max_msg_size=config.websocket.message_size_limit + 1,
        autoping=True,
        compress=False,
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    remote = request.remote or ""
    if not node.connect_limiter.allow(remote, time.monotonic()):
        # Refused before any actor exists; 3013 makes the SDK back off and retry.
        limited = codes.DISCONNECT_TOO_MANY_REQUESTS
        await ws.close(code=limited.code, message=limited.reason.encode())
        return ws
    codec = codec_for_subprotocol(ws.ws_protocol)
    client_id = str(uuid.uuid4())
    forwarded = {name: request.headers[name] for name in node.proxies.forwarded
                 if name in request.headers}  # what proxies' http_headers ask for
    factory = partial(ConnectionActor, node, ws, transport, codec, remote, client_id,
                      forwarded or None)
    runtime = node.runtime
    ref = runtime.start_child(CONNECTIONS_ID, ChildSpec(
        client_id, factory, restart=Restart.TEMPORARY, shutdown=2.0, kind="connection"))
    tell = runtime.tell
    try:
        async for message in ws:
            kind = message.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                tell(ref, Frame(message.data))  # the JSON codec reads str as is
            elif kind is WSMsgType.ERROR:
                log.info("websocket %s: %r", client_id, ws.exception())
                break
    finally:
        if not runtime.closed:
            tell(ref, SocketClosed(ws.close_code))
    return ws
