"""The client transport routes, as the config enables them (Centrifugo's endpoints).

``/connection/websocket`` always; ``http_stream``, ``sse`` (with ``/emulation`` for
either), ``uni_websocket``, ``uni_sse`` and ``uni_http_stream`` when ``enabled``, at
their ``handler_prefix``.
"""

from __future__ import annotations

from aiohttp import web

from broker.config import Config
from broker.metrics import LONG_LIVED as UNTIMED
from broker.pusher.http_api import install_pusher_api
from broker.pusher.ws import pusher_websocket_handler
from broker.transport.emulation import emulation_handler
from broker.transport.streams import http_stream_handler, sse_handler
from broker.transport.uni import (
    uni_http_stream_handler,
    uni_sse_handler,
    uni_websocket_handler,
)
from broker.transport.ws import websocket_handler

WEBSOCKET_PATH = "/connection/websocket"

# Handlers whose request lives as long as the client's connection: the HTTP metrics
# middleware leaves them untimed (a timing frame per connection would cost memory).
LONG_LIVED = frozenset({websocket_handler, http_stream_handler, sse_handler,
                        uni_websocket_handler, uni_sse_handler, uni_http_stream_handler,
                        pusher_websocket_handler})


def install_transports(app: web.Application, config: Config) -> None:
    """Add the client connection endpoints ``config`` enables to ``app``."""
    UNTIMED.update(LONG_LIVED)
    app.router.add_get(WEBSOCKET_PATH, websocket_handler)
    if config.http_stream.enabled:
        app.router.add_route("*", config.http_stream.handler_prefix, http_stream_handler)
    if config.sse.enabled:
        app.router.add_route("*", config.sse.handler_prefix, sse_handler)
    if config.http_stream.enabled or config.sse.enabled:
        app.router.add_route("*", config.emulation.handler_prefix, emulation_handler)
    if config.uni_websocket.enabled:
        app.router.add_get(config.uni_websocket.handler_prefix, uni_websocket_handler)
    if config.uni_sse.enabled:
        app.router.add_route("*", config.uni_sse.handler_prefix, uni_sse_handler)
    if config.uni_http_stream.enabled:
        app.router.add_route("*", config.uni_http_stream.handler_prefix,
                             uni_http_stream_handler)
    if config.pusher.apps:  # Chorus extension: Pusher clients and server libraries
        app.router.add_get("/app/{key}", pusher_websocket_handler)
        install_pusher_api(app)


def endpoints(config: Config) -> list[str]:
    """``name: path`` of every enabled client endpoint (for the start-up log)."""
    out = [f"WebSocket: {WEBSOCKET_PATH}"]
    for name, section in (("http_stream", config.http_stream), ("sse", config.sse),
                          ("uni_websocket", config.uni_websocket),
                          ("uni_sse", config.uni_sse),
                          ("uni_http_stream", config.uni_http_stream)):
        if section.enabled:
            out.append(f"{name}: {section.handler_prefix}")
    if config.http_stream.enabled or config.sse.enabled:
        out.append(f"emulation: {config.emulation.handler_prefix}")
    if config.pusher.apps:
        out.append("pusher: /app/{key} and /apps/{app_id}/...")
    return out
