"""Streamed HTTP responses as client connections: HTTP streaming and SSE with
bidirectional emulation (centrifuge-js), and the serving of every streamed transport.

``POST /connection/http_stream`` — the body holds the client's first commands (its
connect) in JSON, or protobuf with ``Content-Type: application/octet-stream``; the
response streams replies and pushes: JSON lines, or varint-delimited protobuf.
``GET /connection/sse?cf_connect=<commands>`` (or a POST with them as the body) — the
same in JSON, each reply one Server-Sent Event. Later commands of these sessions arrive
as ``POST /emulation`` requests (``broker.transport.emulation``).

How a stream is served (``serve_stream``): the response head goes out with
``Connection: close`` and neither a length nor chunked coding, so the body is
close-delimited and the connection's outbox writes framed bytes straight to the socket,
as it does for a WebSocket — the shard's pre-framed bytes are the wire. A client that
goes away is noticed through the socket's end (an EOF watcher in the place aiohttp
gives a WebSocket's reader); the server ends a session by ending the handler.

Error handling: bad method 405, missing ``cf_connect`` 400, oversized body 413 (naming
the config key), a refused origin 403, a draining node 503, the per-IP connect rate
429 — all before any actor exists.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.connection.actor import Frame, SocketClosed
from broker.connection.framing import SSE_JSON, STREAM_JSON, STREAM_PROTOBUF, Delivery
from broker.transport.common import (
    STREAM_HEADERS,
    admit,
    connect_allowed,
    preflight,
    read_body,
    start_connection,
)
from broker.transport.keys import NODE
from broker.transport.link import StreamLink

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.streams")

CONNECT_PARAM = "cf_connect"


class RawBodyResponse(web.StreamResponse):
    """A streamed response whose body is written by the connection's outbox: no
    Content-Length and no chunked coding (aiohttp's WebSocketResponse turns the same
    length check off), ``Connection: close`` — the body ends when the connection does."""

    _length_check = False


class _EofWatch:
    """Takes aiohttp's payload-parser slot once the request is read: aiohttp hands it
    any bytes the client sends (none are expected; they are dropped) and calls
    ``feed_eof`` when the connection is lost — the client went away."""

    __slots__ = ("_link",)

    def __init__(self, link: StreamLink) -> None:
        self._link = link

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        return False, b""

    def feed_eof(self) -> None:
        self._link.client_gone()


async def serve_stream(request: web.Request, node: Node, cors: dict[str, str], *,
                       name: str, delivery: Delivery, emulation: bool,
                       unidirectional: bool, first: Any, event_stream: bool) -> web.StreamResponse:
    """Answer ``request`` with a stream served by a new connection actor told ``first``
    (its first commands, or the connect of a unidirectional session); return when the
    session ends. ``event_stream``: ``text/event-stream`` and a leading empty line."""
    if not connect_allowed(node, request):
        raise web.HTTPTooManyRequests(text="connect rate limit (client.connect_rate_limit_per_ip)")
    response = RawBodyResponse(status=200, headers={**STREAM_HEADERS, **cors})
    if event_stream:
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
    response.force_close()
    await response.prepare(request)
    transport = request.transport
    if transport is None or transport.is_closing():
        return response
    if event_stream:
        transport.write(b"\r\n")  # as Centrifugo: the client's parser starts at once
    link = StreamLink(transport, delivery, name=name, emulation=emulation,
                      unidirectional=unidirectional)
    request.protocol.set_parser(_EofWatch(link))  # type: ignore[arg-type]
    ref = start_connection(node, link, request.remote or "", request.headers)
    runtime = node.runtime
    runtime.tell(ref, first)
    try:
        await link.done
    finally:
        if not runtime.closed:
            runtime.tell(ref, SocketClosed())
    return response


async def http_stream_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    if request.method == "OPTIONS":
        return preflight(request, node, "http_stream")
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST", "OPTIONS"])
    cors = admit(request, node, "http_stream")
    config = node.config.http_stream
    body = await read_body(request, config.max_request_body_size,
                           "http_stream.max_request_body_size")
    protobuf = request.headers.get("Content-Type", "") == "application/octet-stream"
    return await serve_stream(
        request, node, cors, name="http_stream",
        delivery=STREAM_PROTOBUF if protobuf else STREAM_JSON, emulation=True,
        unidirectional=False, first=Frame(body), event_stream=False)


async def sse_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE].node
    cors = admit(request, node, "sse")
    data: bytes | str
    if request.method == "GET":
        data = request.query.get(CONNECT_PARAM, "")
        if not data:
            raise web.HTTPBadRequest(text=f"{CONNECT_PARAM}: the connect command is required")
    elif request.method == "POST":
        data = await read_body(request, node.config.sse.max_request_body_size,
                               "sse.max_request_body_size")
    else:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    return await serve_stream(request, node, cors, name="sse", delivery=SSE_JSON,
                              emulation=True, unidirectional=False, first=Frame(data),
                              event_stream=True)
