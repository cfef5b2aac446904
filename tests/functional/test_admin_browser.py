"""The admin console in headless Chromium (Debian's ``chromium``, driven by Playwright):
log in, see the tree, crash a shard and watch its restart count rise while its
subscribers keep receiving, see a firing alert, then disconnect a connection from the
console.

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing. Leaves a
screenshot of the console at ``/tmp/chorus-admin.png``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.functional.browser import CHROMIUM, launch_chromium
from tests.functional.conftest import base_config, next_event, run_node, sdk_client

SCREENSHOT = "/tmp/chorus-admin.png"
PASSWORD = "console-password"

playwright_api: Any = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs Debian's chromium"),
]


def config() -> dict[str, Any]:
    return base_config(
        admin={"enabled": True, "password": PASSWORD, "secret": "browser-test-secret-0123456789",
               "allow_crash_actor": True},
        monitor={"interval": "200ms", "alerts": ["crowded: connections >= 1",
                                                 "loop_lag > 100ms for 30s"]},
        channel={"namespaces": [{"name": "room", "allow_subscribe_for_client": True,
                                 "history_size": 10, "history_ttl": "60s"}]})


async def test_console_login_tree_crash_and_disconnect() -> None:
    async with run_node(config()) as node, sdk_client(node, user="alice") as sdk, \
            playwright_api.async_playwright() as pw:
        _, events = await sdk.subscribe("room:lobby")
        shard = f"chorus/shards/shard-{node.node.shard_of('room:lobby')}"
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"http://127.0.0.1:{node.port}/admin/")
            await page.fill("#password", PASSWORD)
            await page.click("#login-form button[type=submit]")

            row = page.locator(f'[data-actor-id="{shard}"]')
            await row.wait_for(state="visible", timeout=10_000)
            restarts = row.locator(".restarts")
            assert (await restarts.inner_text()).strip() == "↻ 0"

            await row.locator('button[data-action="crash"]').click()
            await playwright_api.expect(restarts).to_have_text("↻ 1", timeout=10_000)
            assert node.node.runtime.actor(shard)["restarts"] == 1

            await node.api("publish", {"channel": "room:lobby", "data": {"after": "crash"}})
            pub = await next_event(events.publications)
            assert sdk.value(pub.data) == {"after": "crash"}, "subscribers keep receiving"

            await playwright_api.expect(page.locator('[data-alert="crowded"]')).to_be_visible(
                timeout=10_000)
            await row.click()  # the actor card shows the failure
            await playwright_api.expect(page.locator("#actor-detail")).to_contain_text(
                "crashed from the admin console")
            conn_row = page.locator(f'tr[data-client="{sdk.client_id}"]')
            await conn_row.wait_for(state="visible", timeout=10_000)
            await page.screenshot(path=SCREENSHOT, full_page=True)

            await conn_row.locator('button[data-action="disconnect"]').click()
            disconnected = await next_event(sdk.events.disconnected)
            assert disconnected.code == 3503
            await playwright_api.expect(conn_row).to_have_count(0, timeout=10_000)
        finally:
            await browser.close()


async def test_console_shows_the_async_consumers(redis_url: str) -> None:
    """The consumers section lists each consumer with its counters (here a Redis Stream
    consumer that has published two entries). Screenshot: /tmp/chorus-admin-consumers.png."""
    import json

    import redis.asyncio as aioredis

    stream = "console:events"
    mapping = config()
    mapping["consumers"] = [{"name": "events", "enabled": True, "type": "redis_stream",
                             "redis_stream": {"address": [redis_url], "streams": [stream],
                                              "consumer_group": "console"}}]
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with run_node(mapping) as node, playwright_api.async_playwright() as pw:
            for n in range(2):
                await client.xadd(stream, {"method": "publish", "payload": json.dumps(
                    {"channel": "room:lobby", "data": {"n": n}})})
            browser = await launch_chromium(pw)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(f"http://127.0.0.1:{node.port}/admin/")
                await page.fill("#password", PASSWORD)
                await page.click("#login-form button[type=submit]")
                row = page.locator('tr[data-consumer="events"]')
                await row.wait_for(state="visible", timeout=10_000)
                await playwright_api.expect(row.locator("td").nth(3)).to_have_text(
                    "2", timeout=10_000)  # processed
                assert (await row.locator("td").nth(2).inner_text()) == "1 / 1"  # owned
                await page.locator("#consumers-card").screenshot(
                    path="/tmp/chorus-admin-consumers.png")
            finally:
                await browser.close()
    finally:
        await client.aclose()
