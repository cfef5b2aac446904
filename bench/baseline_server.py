"""The reference broadcast server: bare aiohttp + uvloop, nothing else.

`GET /ws` accepts WebSocket clients (incoming messages are read and dropped).
`POST /broadcast` sends the request body, as one text message, to every client; the
response body is the number of clients written to. Two modes:

- `send_str`: `await ws.send_str(text)` for each client, in one loop. aiohttp 3.14 has
  no non-awaiting public send; an uncompressed `send_str` never suspends unless the
  transport is over its write limit, so the await costs one coroutine, no task.
- `prebuilt`: the WebSocket frame (header + payload) is built once and handed to each
  client's transport with `transport.write(frame)`: the floor for asyncio on this loop.

Both write to the kernel (or the transport's buffer) before the response returns, so a
publisher's HTTP round trip covers the whole fan-out.

Run: `python -m bench.baseline_server --port 8000 --mode send_str`.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import WSMsgType, web

from bench.wsframes import OP_TEXT, server_frame

WS_KEY: web.AppKey[dict[web.WebSocketResponse, asyncio.Transport]] = web.AppKey("ws", dict)
MODE_KEY: web.AppKey[str] = web.AppKey("mode", str)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    """Accept a client and keep it in the broadcast set until it goes away."""
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=65536)
    await ws.prepare(request)
    clients = request.app[WS_KEY]
    transport = request.transport
    assert transport is not None  # prepared: the connection is open
    clients[ws] = transport
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        clients.pop(ws, None)
    return ws


async def broadcast_handler(request: web.Request) -> web.Response:
    """Send the body to every connected client; answer with the count written."""
    body = await request.read()
    clients = request.app[WS_KEY]
    sent = 0
    if request.app[MODE_KEY] == "prebuilt":
        frame = server_frame(OP_TEXT, body)
        for transport in list(clients.values()):
            if not transport.is_closing():
                transport.write(frame)
                sent += 1
    else:
        text = body.decode()
        for ws in list(clients):
            try:
                await ws.send_str(text)
                sent += 1
            except ConnectionError:
                pass  # the client left mid-broadcast; its handler removes it
    return web.Response(text=str(sent))


async def count_handler(request: web.Request) -> web.Response:
    """The number of connected clients (used by tests and sanity checks)."""
    return web.Response(text=str(len(request.app[WS_KEY])))


def make_app(mode: str) -> web.Application:
    """The aiohttp application for `mode` ("send_str" or "prebuilt")."""
    if mode not in ("send_str", "prebuilt"):
        raise ValueError(f"--mode must be send_str or prebuilt, not {mode!r}")
    app = web.Application()
    app[WS_KEY] = {}
    app[MODE_KEY] = mode
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/broadcast", broadcast_handler)
    app.router.add_get("/count", count_handler)
    return app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=("send_str", "prebuilt"), default="send_str")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.mode), host=args.host, port=args.port, print=None,
                access_log=None, backlog=4096, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
