"""Chorus mounted in a user's own aiohttp app (``app.add_subapp``), on both WebSocket readers.

The documented embedding (``broker.app``): the user's app has its own routes and a
middleware, Chorus is a sub-app under ``/realtime``. A socket detached from aiohttp after
the upgrade (the default) must behave there as on a standalone node: the user's
middleware sees the upgrade answered (101), the user's routes keep serving, a publication
reaches the subscriber, and the app's shutdown drains the socket with 3001 "shutdown".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import ClientSession, WSMsgType, web

from broker import Chorus
from broker.auth import make_token
from broker.config import config_from_mapping
from tests.functional.conftest import SECRET, base_config, listening_socket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "aiohttp-reader"])
async def test_a_mounted_chorus_serves_websockets_next_to_the_users_routes(
        detach: bool) -> None:
    chorus = Chorus(config_from_mapping(base_config(websocket={"detach": detach})))
    seen: list[tuple[str, int]] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        seen.append((request.path, response.status))
        return response

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[record])
    app.router.add_get("/hello", hello)
    app.add_subapp("/realtime", chorus.create_app())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        async with ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/realtime/connection/websocket")
            await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, "u")}})
                              + "\n" + json.dumps({"id": 2, "subscribe": {"channel": "news"}}))
            replies: list[dict[str, object]] = []
            while len(replies) < 2:
                replies += [json.loads(x) for x in (await ws.receive_str(timeout=5)).split("\n")]
            assert [r["id"] for r in replies] == [1, 2] and "connect" in replies[0]
            async with session.get(f"http://127.0.0.1:{port}/hello") as response:
                assert await response.text() == "hello"
            await chorus.node.publish("news", b'{"n":1}')
            push = json.loads(await ws.receive_str(timeout=5))
            assert push["push"]["pub"]["data"] == {"n": 1}
            # A detached socket's handler returned at the upgrade; aiohttp's reader
            # returns when the socket ends.
            assert (("/realtime/connection/websocket", 101) in seen) is detach
            assert ("/hello", 200) in seen
            conn = next(iter(chorus.node.connections.values()))
            protocol = type(conn.link.writer.get_protocol()).__name__
            assert protocol == ("DirectWebSocket" if detach else "RequestHandler")

            await runner.cleanup()  # the user's app shuts down: Chorus drains
            message = await ws.receive(timeout=10)
            assert message.type is WSMsgType.CLOSE, message
            assert (message.data, message.extra) == (3001, "shutdown")
            await ws.close()
    finally:
        await runner.cleanup()
