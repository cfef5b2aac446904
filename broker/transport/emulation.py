"""``POST /emulation``: the commands of HTTP-streaming and SSE sessions, routed to the node
that holds the session.

centrifuge-js sends each batch of commands of an emulated session as
``{"session": …, "node": …, "data": "<commands as JSON text>"}`` (JSON), or as a protobuf
``EmulationRequest`` (1 node, 2 session, 3 data) with ``Content-Type:
application/octet-stream``; ``session`` and ``node`` come from its connect result. The
replies travel down the session's stream, not in this response.

Behind a load balancer without sticky sessions the request may reach any node. The
session's node is the request's ``node`` (or, failing that, the prefix of the session
id, which names it too). Here: the commands go to the connection actor at once. On a
node of the cluster heard from recently (heartbeats, ``broker.cluster``): they travel as
an ``emulation`` control message over the engine and only that node applies them, at
most once (as Centrifugo's survey: a lost one times the command out in the SDK).

Statuses, as centrifuge-js reads them: 204 accepted (also for a session gone from this
node: its stream has ended, the SDK reconnects from there); 404 the node is unknown
(restarted or gone: the SDK closes the transport and reconnects); 400 malformed; 413
over ``emulation.max_request_body_size``; 503 the engine could not take the message.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from broker.cluster import deliver_emulated, emulation_control
from broker.protocol import ProtocolError
from broker.protocol.protobuf_codec import decode_message
from broker.transport.common import admit, preflight, read_body
from broker.transport.keys import NODE

log = logging.getLogger("chorus.emulation")


def parse_request(body: bytes, protobuf: bool) -> tuple[str, str, bytes]:
    """(node, session, commands) of an emulation request body.

    Error handling: ValueError for anything malformed (bad JSON or protobuf, a JSON
    ``data`` that is not a string, a missing session).
    """
    if protobuf:
        try:
            request = decode_message("EmulationRequest", body)
        except ProtocolError as error:
            raise ValueError(f"bad protobuf: {error}") from None
        node, session, data = (request.get("node", ""), request.get("session", ""),
                               request.get("data", b""))
    else:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"bad JSON: {error}") from None
        if not isinstance(request, dict):
            raise ValueError("expected a JSON object")
        node, session, text = (request.get("node") or "", request.get("session"),
                               request.get("data"))
        if not isinstance(text, str) or not isinstance(node, str):
            raise ValueError("data must be the commands as a JSON string")
        data = text.encode()
    if not isinstance(session, str) or not session:
        raise ValueError("session is required")
    return node, session, data


async def emulation_handler(request: web.Request) -> web.Response:
    node = request.app[NODE].node
    if request.method == "OPTIONS":
        return preflight(request, node, "emulation")
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST", "OPTIONS"])
    cors = admit(request, node, "emulation")
    body = await read_body(request, node.config.emulation.max_request_body_size,
                           "emulation.max_request_body_size")
    protobuf = request.headers.get("Content-Type", "") == "application/octet-stream"
    try:
        target, session, data = parse_request(body, protobuf)
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"emulation request: {error}", headers=cors) from None
    target = target or session.partition(".")[0]
    if target == node.uid:
        node.emulation_routes["local"] += 1
        deliver_emulated(node, session, data)
        return web.Response(status=204, headers=cors)
    if not any(info.get("uid") == target for info in node.directory.alive(time.time())):
        node.emulation_routes["unknown_node"] += 1
        raise web.HTTPNotFound(text="emulation: node not found", headers=cors)
    node.emulation_routes["forwarded"] += 1
    try:
        await node.engine.publish_control(emulation_control(target, session, data))
    except Exception as error:
        log.warning("emulation request for node %s not forwarded: %r", target, error)
        raise web.HTTPServiceUnavailable(text="emulation: engine unavailable",
                                         headers=cors) from None
    return web.Response(status=204, headers=cors)
