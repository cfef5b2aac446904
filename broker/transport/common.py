"""What every client transport's handler shares: admission (draining, origin, connect
rate), CORS headers, bounded request bodies, and starting the connection actor.

Each transport handler is a thin adapter: it admits the request here, builds its
``Link`` (``broker.transport.link``), starts one ``ConnectionActor`` with it and feeds it
what the client sends. Everything else — auth, limits, recovery, presence, RPC, metrics,
slow-consumer handling — is the actor's and the outbox's, the same for every transport.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from actors import ChildSpec, Restart
from broker.connection.actor import ConnectionActor
from broker.names import CONNECTIONS_ID

if TYPE_CHECKING:
    from broker.node import Node
    from broker.transport.link import Link

# Sent with every streamed response: no proxy buffering (nginx honours this header), no
# caching anywhere (Centrifugo sends the same).
STREAM_HEADERS = {
    "X-Accel-Buffering": "no",
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expire": "0",
}


def origin_allowed(allowed: tuple[str, ...], origin: str | None, host: str | None) -> bool:
    """Centrifugo's rule for a browser's ``Origin`` header, on every client transport.

    No ``Origin`` (a non-browser client: the SDKs for Node, Python, Go ...): allowed.
    With ``client.allowed_origins`` set, the Origin must match an entry (``*`` matches
    any). Without it, browsers are held to the same origin: the Origin's host[:port]
    must equal the request's ``Host`` header (case-insensitive, the scheme not
    compared, as Centrifugo's ``checkSameHost``), so a page on another site cannot open
    a connection riding on its visitor's cookies or network position. ``Origin: null``
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


def admit(request: web.Request, node: Node, what: str) -> dict[str, str]:
    """Refuse a request the node must not serve; return the CORS headers for its answer.

    Error handling: raises 503 while the node drains and 403 for a browser origin that
    ``client.allowed_origins`` (or the same-origin rule) does not allow. An allowed
    browser origin gets ``Access-Control-Allow-Origin`` and ``-Credentials`` (the
    Centrifugo CORS middleware's answer); a client without ``Origin`` gets none.
    """
    if node.draining:
        raise web.HTTPServiceUnavailable(text="node is draining")
    origin = request.headers.get("Origin")
    if not origin_allowed(node.config.client.allowed_origins, origin, request.headers.get("Host")):
        raise web.HTTPForbidden(text=f"origin not allowed on {what}")
    if origin is None:
        return {}
    cors = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
    wanted = request.headers.get("Access-Control-Request-Headers")
    if wanted and wanted != "null":
        cors["Access-Control-Allow-Headers"] = wanted
    return cors


def preflight(request: web.Request, node: Node, what: str) -> web.Response:
    """The answer to a browser's CORS preflight (``OPTIONS``) of a POST endpoint."""
    headers = admit(request, node, what)
    headers.update({"Access-Control-Max-Age": "300",
                    "Access-Control-Allow-Methods": "POST, OPTIONS"})
    return web.Response(status=204, headers=headers)


def connect_allowed(node: Node, request: web.Request) -> bool:
    """The per-IP connect rate limit (``client.connect_rate_limit_per_ip``)."""
    return node.connect_limiter.allow(request.remote or "", time.monotonic())


async def read_body(request: web.Request, limit: int, key: str) -> bytes:
    """The request body, at most ``limit`` bytes.

    Error handling: 413 naming the config ``key`` for a longer body.
    """
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=f"request body over {key} ({limit} bytes)")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body),
                                            text=f"request body over {key} ({limit} bytes)")
    return body


def forwarded_headers(node: Node, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The request headers a proxy forwards (its ``http_headers``), by their configured
    names; nothing when no proxy asks for any."""
    if not headers:
        return {}
    return {name: headers[name] for name in node.proxies.forwarded if name in headers}


_ID_BATCH = 256  # client ids per read of the system's random source
_random_pool: list[bytes] = []


def _forget_random_pool() -> None:
    _random_pool.clear()  # a forked child must not hand out its parent's ids


os.register_at_fork(after_in_child=_forget_random_pool)


def new_client_id() -> str:
    """A random (version 4) UUID as text, what ``str(uuid.uuid4())`` gives, without
    building a ``UUID`` object (a third of the cost). The bytes come from ``os.urandom``
    as uuid4's do, read for ``_ID_BATCH`` ids at once: one syscall per connection was
    a tenth of the id's cost."""
    pool = _random_pool
    if not pool:
        chunk = os.urandom(16 * _ID_BATCH)
        pool.extend(chunk[i:i + 16] for i in range(0, len(chunk), 16))
    raw = bytearray(pool.pop())
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def start_connection(node: Node, link: Link, remote: str,
                     headers: Mapping[str, str] | None = None) -> Any:
    """Start the connection actor of ``link`` under the connection supervisor; returns
    its ref (tell it ``Frame``/``UniConnect``/``SocketClosed``).

    ``headers`` are the HTTP request's headers; only those the configured proxies'
    ``http_headers`` ask for (``node.proxies.forwarded``) reach the session."""
    client_id = new_client_id()
    forwarded = forwarded_headers(node, headers)
    factory = partial(ConnectionActor, node, link, remote, client_id, forwarded or None)
    return node.runtime.start_child(CONNECTIONS_ID, ChildSpec(
        client_id, factory, restart=Restart.TEMPORARY, shutdown=2.0, kind="connection"))
