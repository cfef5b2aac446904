"""A `websockets` peer for the bench: the library's asyncio server and its `broadcast()`.

WebSocket clients connect to `ws://127.0.0.1:<port>/` (any path); the server keeps the
set of open connections. A publication is triggered by `POST /broadcast` on a second
listener, `--trigger-port`, served by aiohttp in the same process and event loop (uvloop):
`websockets`' server speaks only the GET upgrade, so it cannot take the POST itself.
The trigger is the same aiohttp request handling the baselines and python-socketio pay
for their POST, so the per-publication overhead is equal in kind; per delivery the
cost is `websockets.broadcast()` alone (it writes each connection's frame synchronously).

Settings that match the others: no compression (the load client offers none), the
library's default keepalive pings (answered by the client), `write_limit` 10 MiB like
Chorus's `queue_max_size` in the bench config (broadcast() never skips a slow
connection for its buffer; the limit only sets when the transport pauses writers).

Run: `python -m bench.peer_websockets --port 8000 --trigger-port 8001`.
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    """Keep the connection in the broadcast set until it closes (messages dropped)."""
    CLIENTS.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        CLIENTS.discard(ws)


async def publish(request: web.Request) -> web.Response:
    """Broadcast the body as one text message to every connection; answer the count."""
    text = (await request.read()).decode()
    clients = len(CLIENTS)
    broadcast(CLIENTS, text)
    return web.Response(text=str(clients))


async def serve_forever(host: str, port: int, trigger_port: int) -> None:
    """Start the trigger first, so a listening WebSocket port means the bench can post."""
    app = web.Application()
    app.router.add_post("/broadcast", publish)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, trigger_port, backlog=128).start()
    async with serve(handler, host, port, backlog=4096, compression=None,
                     max_size=65536, write_limit=10 * 1024 * 1024) as server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trigger-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    uvloop.run(serve_forever(args.host, args.port, args.trigger_port))


if __name__ == "__main__":
    main()
