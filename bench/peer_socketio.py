"""A python-socketio peer for the bench: Socket.IO 5.x on aiohttp + uvloop, as documented.

`GET /socket.io/?EIO=4&transport=websocket` is python-socketio's own endpoint (Engine.IO
v4 straight over WebSocket, no long-polling). A client joins the room `bench` by
emitting `join` with an ack (`421["join"]` -> `431["ok"]`), the Socket.IO way of
subscribing. `POST /publish` parses the JSON body and does
`await sio.emit("pub", data, room="bench")`; subscribers receive `42["pub",<data>]`.
The POST returns once python-socketio has queued the packet for every member: its
per-connection writer tasks do the sending after that (Engine.IO's design).

One departure from the defaults: packets are encoded with compact JSON separators, so
the load client finds `"t":<ns>,"s":<seq>` in the frame as it does for every server.
This only makes python-socketio's frames smaller (its figures better, if anything).

Run: `python -m bench.peer_socketio --port 8000`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import socketio
import uvloop
from aiohttp import web

ROOM = "bench"


class CompactJson:
    """The `json` module python-socketio uses, with compact separators (see above)."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("separators", (",", ":"))
        return json.dumps(obj, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        return json.loads(text, **kwargs)


def make_app() -> web.Application:
    """The aiohttp application with python-socketio attached and the publish route."""
    sio = socketio.AsyncServer(async_mode="aiohttp", json=CompactJson,
                               cors_allowed_origins="*", logger=False,
                               engineio_logger=False)
    app = web.Application()
    sio.attach(app)

    @sio.on("join")  # type: ignore[untyped-decorator,unused-ignore]
    async def join(sid: str, *_args: Any) -> str:
        await sio.enter_room(sid, ROOM)
        return "ok"  # the ack (`43<id>["ok"]`) tells the client it is in the room

    async def publish(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        await sio.emit("pub", data, room=ROOM)
        return web.Response(text="ok")

    app.router.add_post("/publish", publish)
    return app


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None,
                backlog=4096, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
