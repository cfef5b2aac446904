"""Pusher clients in a real browser: pusher-js (its ``with-encryption`` web build, the
file pusher-js ships for ``<script>`` tags) and Laravel Echo over it, in Debian's
Chromium driven by Playwright, against a live node.

The page is served by the application's backend (``pusherkit.auth_backend``), which
also signs channel auth and user sign-in with the official ``pusher`` library, so
pusher-js posts to a same-origin ``/auth`` exactly as in production; the node allows
that origin (``client.allowed_origins``). Events are triggered through the library's
HTTP client. Two pages in two browser contexts (separate storage, separate sockets)
play two users. ``tests/js/pusher-page.js`` records what pusher-js and Echo report;
``take`` awaits an event in the page.

Skipped when ``/usr/bin/chromium``, the ``playwright`` package or the npm packages are
missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from tests.functional.browser import CHROMIUM, launch_chromium
from tests.functional.conftest import RunningNode, free_port, run_node
from tests.functional.jsclient import JS_DIR
from tests.functional.pusherkit import KEY, auth_backend, call, pusher_config, server_lib

PUSHER_JS = JS_DIR / "node_modules/pusher-js/dist/web/pusher-with-encryption.min.js"
ECHO_JS = JS_DIR / "node_modules/laravel-echo/dist/echo.iife.js"
HARNESS_JS = JS_DIR / "pusher-page.js"
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>chorus pusher</title>
<script src="/pusher.js"></script><script src="/echo.js"></script>
<script src="/harness.js"></script></head><body>pusher-js</body></html>"""

playwright_api: Any = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.node,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs Debian's chromium"),
    pytest.mark.skipif(not PUSHER_JS.exists() or not ECHO_JS.exists(),
                       reason="needs the npm packages of tests/js (scripts/setup)"),
]


def page_routes(app: web.Application) -> None:
    """The test page and the scripts it loads, beside the backend's auth endpoints."""
    async def page(_: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    def script(path: Any) -> Callable[[web.Request], Any]:
        async def serve(_: web.Request) -> web.Response:
            return web.Response(body=path.read_bytes(), content_type="text/javascript")
        return serve

    app.router.add_get("/", page)
    app.router.add_get("/pusher.js", script(PUSHER_JS))
    app.router.add_get("/echo.js", script(ECHO_JS))
    app.router.add_get("/harness.js", script(HARNESS_JS))


class Page:
    """One browser page running pusher-js (or Echo): calls into ``pusher-page.js``."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.frames: list[str] = []  # WebSocket messages the page received, as text
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda payload: self.frames.append(
                payload if isinstance(payload, str) else payload.decode())))

    async def run(self, script: str, *args: Any) -> Any:
        """Call ``script`` (a function expression taking one array) in the page."""
        return await self.page.evaluate(f"(args) => ({script})(...args)", list(args))

    async def take(self, kind: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = await self.page.evaluate(
            "([kind, fields]) => take(kind, fields)", [kind, fields])
        return event

    async def pending(self, kind: str) -> int:
        count: int = await self.page.evaluate("(kind) => pending(kind)", kind)
        return count

    async def subscribed(self, channel: str) -> dict[str, Any]:
        await self.run("subscribe", channel)
        return await self.take("members", channel=channel)


@asynccontextmanager
async def browser_pages(node: RunningNode, base: str, count: int, *,
                        echo: bool = False) -> AsyncIterator[list[Page]]:
    """``count`` pages, each in its own browser context, connected to ``node``."""
    async with playwright_api.async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            pages = []
            for _ in range(count):
                context = await browser.new_context()
                page = Page(await context.new_page())
                await page.page.goto(f"{base}/")
                await page.run("start", {"key": KEY, "host": "127.0.0.1", "port": node.port,
                                         "echo": echo})
                await page.take("connected")
                pages.append(page)
            yield pages
        finally:
            await browser.close()


@asynccontextmanager
async def browser_setup(users: Iterator[str] | None = None, *, count: int = 1,
                        echo: bool = False) -> AsyncIterator[tuple[RunningNode, list[Page]]]:
    """A node, the backend (page + auth) on an origin the node allows, and ``count``
    connected pages; presence users are taken from ``users`` by socket id."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    assigned: dict[str, str] = {}

    def user_for(socket_id: str) -> str:
        if users is None:
            return socket_id
        return assigned.setdefault(socket_id, next(users))

    config = pusher_config()
    config["client"]["allowed_origins"] = [origin]
    async with run_node(config) as node, \
            auth_backend(node, user_for, port=port, routes=page_routes) as backend, \
            browser_pages(node, backend.url, count, echo=echo) as pages:
        yield node, pages


async def test_pusher_js_in_chromium_gets_public_private_and_encrypted_events():
    async with browser_setup() as (node, [page]):
        for channel in ("news", "private-orders", "private-encrypted-vault"):
            await page.subscribed(channel)
        lib = server_lib(node)
        await call(lib.trigger, ["news", "private-orders"], "created", {"id": 7})
        for channel in ("news", "private-orders"):
            got = await page.take("message", channel=channel)
            assert got["name"] == "created" and got["data"] == {"id": 7}
        # encrypted by the library with the master key; pusher-js decrypts with the
        # shared secret /auth gave it (tweetnacl in the with-encryption build)
        await call(lib.trigger, "private-encrypted-vault", "secret", {"pin": 1234})
        got = await page.take("message", channel="private-encrypted-vault")
        assert got["name"] == "secret" and got["data"] == {"pin": 1234}
        # ... and what crossed the node was ciphertext only
        relayed = [json.loads(f) for f in page.frames if "private-encrypted-vault" in f
                   and '"secret"' in f]
        assert len(relayed) == 1
        payload = json.loads(relayed[0]["data"])
        assert set(payload) == {"nonce", "ciphertext"} and "1234" not in relayed[0]["data"]


async def test_presence_and_client_events_between_two_browser_contexts():
    async with browser_setup(iter(["ann", "bob"]), count=2) as (node, [ann, bob]):
        first = await ann.subscribed("presence-room")
        assert first["ids"] == ["ann"] and first["me"] == "ann"
        second = await bob.subscribed("presence-room")
        assert second["ids"] == ["ann", "bob"] and second["count"] == 2
        added = await ann.take("member_added")
        assert added["id"] == "bob" and added["info"] == {"name": "n-bob"}

        await bob.run("bind", "presence-room", "client-typing")
        assert await ann.run("trigger", "presence-room", "client-typing", {"on": True})
        got = await bob.take("bound")
        assert got["data"] == {"on": True} and got["user_id"] == "ann"
        # the sender's own copy would arrive before this trigger's event, if at all
        await call(server_lib(node).trigger, "presence-room", "marker", "m")
        await ann.take("message", name="marker")
        await bob.take("message", name="marker")
        assert await ann.pending("message") == 0

        # private channel client events too, both ways
        for page in (ann, bob):
            await page.subscribed("private-chat")
        await ann.run("bind", "private-chat", "client-hello")
        await bob.run("trigger", "private-chat", "client-hello", "from bob")
        assert (await ann.take("bound", channel="private-chat"))["data"] == "from bob"

        await bob.page.context.close()  # bob's last socket goes: member_removed
        removed = await ann.take("member_removed")
        assert removed["id"] == "bob"
        info = await call(server_lib(node).channel_info, "presence-room", ["user_count"])
        assert info["user_count"] == 1


async def test_laravel_echo_in_chromium_private_presence_whispers_and_encrypted():
    async with browser_setup(iter(["ann", "bob"]), count=2, echo=True) as (node, [ann, bob]):
        await ann.run("echoListen", {"kind": "private", "name": "orders",
                                     "event": ".OrderShipped"})
        await ann.run("echoListen", {"kind": "encryptedPrivate", "name": "vault",
                                     "event": ".Opened"})
        await ann.run("echoListen", {"kind": "join", "name": "lobby", "event": ".Said"})
        here = await ann.take("here")
        assert [u["name"] for u in here["users"]] == ["n-ann"]
        for name in ("orders", "vault", "lobby"):
            await ann.take("echo_subscribed", name=name)
        await ann.run("listenForWhisper", "join", "lobby", "typing")

        await bob.run("echoListen", {"kind": "join", "name": "lobby", "event": ".Said"})
        await bob.take("here")
        joining = await ann.take("joining")
        assert joining["user"] == {"name": "n-bob"}

        lib = server_lib(node)
        await call(lib.trigger, "private-orders", "OrderShipped", {"order": 5})
        assert (await ann.take("echo", name="orders"))["data"] == {"order": 5}
        await call(lib.trigger, "private-encrypted-vault", "Opened", {"by": "ann"})
        assert (await ann.take("echo", name="vault"))["data"] == {"by": "ann"}
        await call(lib.trigger, "presence-lobby", "Said", {"text": "hi"})
        for page in (ann, bob):
            assert (await page.take("echo", name="lobby"))["data"] == {"text": "hi"}

        await bob.run("whisper", "join", "lobby", "typing", {"who": "bob"})
        assert (await ann.take("whisper", name="lobby"))["data"] == {"who": "bob"}

        await bob.run("leave", "lobby")
        leaving = await ann.take("leaving")
        assert leaving["user"] == {"name": "n-bob"}
