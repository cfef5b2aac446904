"""centrifuge-js in headless Chromium (Debian's ``chromium``, driven by Playwright) behind
something that refuses WebSocket: the SDK falls back to HTTP streaming and works there —
publications from the API and from the page, presence, RPC through ``/emulation``.

The page and the SDK's browser bundle (``tests/js/node_modules/centrifuge/dist``) are
served by the same aiohttp app as Chorus (same origin); ``/blocked/websocket`` answers
every upgrade with 403, as a proxy that blocks WebSocket would. Skipped when
``/usr/bin/chromium``, the ``playwright`` package or the npm bundle is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broker import Chorus
from broker.auth import make_token
from broker.config import config_from_mapping
from tests.functional.browser import CHROMIUM, launch_chromium
from tests.functional.conftest import SECRET, base_config, free_port

BUNDLE = Path(__file__).resolve().parent.parent / "js" / "node_modules" / "centrifuge" / "dist"

playwright_api: Any = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs Debian's chromium"),
    pytest.mark.skipif(not (BUNDLE / "centrifuge.js").is_file(),
                       reason="the centrifuge npm bundle is not installed (cd tests/js && "
                              "npm install)"),
]

PAGE = """<!doctype html><html><body><script src="/sdk/centrifuge.js"></script><script>
window.events = [];
const host = location.host;
const client = new Centrifuge([
  {transport: "websocket", endpoint: `ws://${host}/blocked/websocket`},
  {transport: "http_stream", endpoint: `http://${host}/connection/http_stream`},
], {token: TOKEN, emulationEndpoint: "/emulation"});
client.on("connected", (ctx) =>
  events.push({event: "connected", transport: ctx.transport, client: ctx.client}));
const sub = client.newSubscription("chat:room");
sub.on("subscribed", () => events.push({event: "subscribed"}));
sub.on("publication", (ctx) =>
  events.push({event: "publication", data: ctx.data, offset: ctx.offset}));
sub.subscribe();
client.connect();
window.client = client;
window.sub = sub;
</script></body></html>"""


@asynccontextmanager
async def served(chorus: Chorus, token: str) -> AsyncIterator[tuple[int, list[str]]]:
    """Chorus plus the page, the bundle and a route refusing WebSocket upgrades; yields
    the port and the log of refused upgrades."""
    refused: list[str] = []

    async def page(request: web.Request) -> web.Response:
        body = PAGE.replace("TOKEN", json.dumps(token))
        return web.Response(text=body, content_type="text/html")

    async def blocked(request: web.Request) -> web.Response:
        refused.append(request.headers.get("Upgrade", ""))
        raise web.HTTPForbidden(text="WebSocket is not allowed here")

    app = chorus.create_app()
    app.router.add_get("/", page)
    app.router.add_get("/blocked/websocket", blocked)
    app.router.add_static("/sdk/", BUNDLE)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, refused
    finally:
        await runner.cleanup()


async def test_falls_back_to_http_streaming_when_websocket_is_refused() -> None:
    chorus = Chorus(config_from_mapping(base_config(
        http_stream={"enabled": True},
        channel={"namespaces": [{"name": "chat", "presence": True, "history_size": 10,
                                 "history_ttl": "60s", "allow_subscribe_for_client": True,
                                 "allow_publish_for_subscriber": True,
                                 "allow_presence_for_subscriber": True}]})))

    @chorus.rpc("echo")
    async def echo(ctx: dict[str, Any], data: bytes) -> bytes:
        return data

    async with served(chorus, make_token(SECRET, "browser")) as (port, refused), \
            playwright_api.async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_function(
                "events.some(e => e.event === 'subscribed')", timeout=15_000)
            connected = await page.evaluate("events.find(e => e.event === 'connected')")
            assert connected["transport"] == "http_stream"
            assert refused and refused[0].lower() == "websocket", "WebSocket was tried first"
            conn = chorus.node.connections[connected["client"]]
            assert conn.link.name == "http_stream" and conn.link.emulation

            await chorus.node.publish("chat:room", b'{"from":"api"}')
            await page.wait_for_function("events.some(e => e.event === 'publication')")
            await page.evaluate("client.publish('chat:room', {from: 'page'})")
            await page.wait_for_function(
                "events.filter(e => e.event === 'publication').length === 2")
            pubs = await page.evaluate("events.filter(e => e.event === 'publication')")
            assert [(p["data"], p["offset"]) for p in pubs] == [
                ({"from": "api"}, 1), ({"from": "page"}, 2)]
            presence = await page.evaluate(
                "sub.presence().then(r => Object.keys(r.clients))")
            assert presence == [connected["client"]]
            rpc = await page.evaluate("client.rpc('echo', {q: 42}).then(r => r.data)")
            assert rpc == {"q": 42}
        finally:
            await browser.close()
