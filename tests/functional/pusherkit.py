"""Pusher test kit: a node with Pusher apps, an auth backend signed by the official
``pusher`` library, and pusher-js (or Laravel Echo) clients in Node (``tests/js/pusher.mjs``).

The backend is a real aiohttp server on a free port: pusher-js posts ``socket_id`` and
``channel_name`` to ``/auth`` (and ``socket_id`` to ``/user-auth``) as it does in
production, and the answer is ``pusher.Pusher.authenticate`` /
``authenticate_user`` — the same library the application's server would run. The
library's HTTP client is synchronous (requests), so ``trigger`` and friends run in a
thread: the node under test shares this event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pusher
from aiohttp import web

from tests.functional.conftest import RunningNode, base_config, free_port
from tests.functional.jsclient import JS_DIR, NODE, JsClient, needs_node

APP_ID, KEY, SECRET = "4242", "app-key", "app-secret-0123456789"
OTHER_ID, OTHER_KEY, OTHER_SECRET = "4343", "other-key", "other-secret-0123456789"
MASTER_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

needs_pusher_js = [*needs_node]
T = TypeVar("T")


def pusher_config(**app: Any) -> dict[str, Any]:
    """The test config with two Pusher apps (``app`` overrides the first one's keys)."""
    first = {"id": APP_ID, "key": KEY, "secret": SECRET, "enable_client_messages": True,
             "enable_user_authentication": True, **app}
    second = {"id": OTHER_ID, "key": OTHER_KEY, "secret": OTHER_SECRET}
    return base_config(pusher={"apps": [first, second]})


def server_lib(node: RunningNode, *, secret: str = SECRET, app_id: str = APP_ID,
               key: str = KEY) -> pusher.Pusher:
    """The official server library pointed at ``node`` over plain HTTP."""
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, ssl=False, host="127.0.0.1",
                         port=node.port, encryption_master_key_base64=MASTER_KEY)


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking server-library call off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


@dataclass
class Backend:
    url: str
    members: dict[str, dict[str, Any]]  # socket id -> presence member it is given


@asynccontextmanager
async def auth_backend(node: RunningNode, user_for: Callable[[str], str] = lambda s: s, *,
                       port: int | None = None,
                       routes: Callable[[web.Application], None] | None = None,
                       ) -> AsyncIterator[Backend]:
    """The application's auth endpoints, signing with the official library. A presence
    member's ``user_id`` is ``user_for(socket_id)`` (default: the socket id). ``port``:
    serve there (reserved by ``free_port`` beforehand, say to name the backend's origin in
    the node's config); ``routes`` adds the test's own routes (a page to load, say)."""
    lib = server_lib(node)
    members: dict[str, dict[str, Any]] = {}

    async def auth(request: web.Request) -> web.Response:
        form = await request.post()
        socket_id, channel = str(form["socket_id"]), str(form["channel_name"])
        custom = None
        if channel.startswith("presence-"):
            user = user_for(socket_id)
            custom = members[socket_id] = {"user_id": user, "user_info": {"name": f"n-{user}"}}
        signed = lib.authenticate(channel=channel, socket_id=socket_id, custom_data=custom)
        # the library returns an encrypted channel's shared_secret as bytes (base64 text)
        return web.json_response(signed, dumps=lambda v: json.dumps(
            v, default=lambda b: b.decode()))

    async def user_auth(request: web.Request) -> web.Response:
        form = await request.post()
        socket_id = str(form["socket_id"])
        return web.json_response(lib.authenticate_user(
            socket_id, {"id": user_for(socket_id), "name": "someone"}))

    app = web.Application()
    app.router.add_post("/auth", auth)
    app.router.add_post("/user-auth", user_auth)
    if routes is not None:
        routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Backend(f"http://127.0.0.1:{port}", members)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def pusher_js(node: RunningNode, backend: Backend | None = None, *, key: str = KEY,
                    echo: bool = False) -> AsyncIterator[JsClient]:
    """A pusher-js client (with Laravel Echo over it when ``echo``), connecting at once."""
    assert NODE is not None
    base = backend.url if backend is not None else "http://127.0.0.1:9"
    options = {"key": key, "host": "127.0.0.1", "port": node.port, "echo": echo,
               "authEndpoint": f"{base}/auth", "userAuthEndpoint": f"{base}/user-auth"}
    process = await asyncio.create_subprocess_exec(
        NODE, str(JS_DIR / "pusher.mjs"), json.dumps(options), cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        yield JsClient(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
