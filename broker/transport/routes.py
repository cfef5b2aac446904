"""The client transport routes, as the config enables them (Centrifugo's endpoints).

``/connection/websocket`` always; ``http_stream``, ``sse`` (with ``/emulation`` for
either), ``uni_websocket``, ``uni_sse`` and ``uni_http_stream`` when ``enabled``, at
their ``handler_prefix``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from broker.config import Config
from broker.metrics import LONG_LIVED as UNTIMED
from broker.transport.ws import websocket_handler

WEBSOCKET_PATH = "/connection/websocket"

Handler = Callable[[web.Request], Any]


def _add(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Route ``handler``, whose request lives as long as the client's connection: the
    HTTP metrics middleware leaves it untimed (a timing frame per connection would cost
    memory)."""
    UNTIMED.add(handler)
    if method == "GET":
        app.router.add_get(path, handler)  # and HEAD, as add_get does
    else:
        app.router.add_route(method, path, handler)


def install_transports(app: web.Application, config: Config) -> None:
    """Add the client connection endpoints ``config`` enables to ``app``.

    The code of a transport is imported only when it is enabled (a fast start: a node
    serving WebSocket only never loads the stream, uni or Pusher modules).
    """
    _add(app, "GET", WEBSOCKET_PATH, websocket_handler)
    if config.http_stream.enabled or config.sse.enabled:
        from broker.transport.emulation import emulation_handler
        from broker.transport.streams import http_stream_handler, sse_handler

        if config.http_stream.enabled:
            _add(app, "*", config.http_stream.handler_prefix, http_stream_handler)
        if config.sse.enabled:
            _add(app, "*", config.sse.handler_prefix, sse_handler)
        app.router.add_route("*", config.emulation.handler_prefix, emulation_handler)
    if config.uni_websocket.enabled or config.uni_sse.enabled or config.uni_http_stream.enabled:
        from broker.transport.uni import (
            uni_http_stream_handler,
            uni_sse_handler,
            uni_websocket_handler,
        )

        if config.uni_websocket.enabled:
            _add(app, "GET", config.uni_websocket.handler_prefix, uni_websocket_handler)
        if config.uni_sse.enabled:
            _add(app, "*", config.uni_sse.handler_prefix, uni_sse_handler)
        if config.uni_http_stream.enabled:
            _add(app, "*", config.uni_http_stream.handler_prefix, uni_http_stream_handler)
    if config.pusher.apps:  # Chorus extension: Pusher clients and server libraries
        from broker.pusher.http_api import install_pusher_api
        from broker.pusher.ws import pusher_websocket_handler

        _add(app, "GET", "/app/{key}", pusher_websocket_handler)
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
