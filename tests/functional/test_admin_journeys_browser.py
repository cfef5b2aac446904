"""The admin console's connection journeys in headless Chromium (Debian's ``chromium``,
driven by Playwright): a scripted session (connect, subscribe, a dropped connection, a
reconnect that recovers, a slow consumer), then the console shows the node's funnel and
aggregates and, for the user typed in, their timeline. The screenshot goes to
``/tmp/chorus-admin-journeys.png``; with ``CHORUS_UPDATE_SCREENSHOTS=1`` it replaces the
README's ``docs/admin-journeys.png`` (a test run leaves the checkout unchanged otherwise).

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.functional.browser import CHROMIUM, launch_chromium
from tests.functional.conftest import ClientEvents, drop_transport, next_event, run_node, sdk_client
from tests.functional.test_journeys import (
    ADMIN,
    flood_until_slow,
    has_events,
    journey_config,
    slow_reader,
)
from tests.functional.test_sdk_history_recovery import Gap, publish
from tests.waiting import wait_until

SCREENSHOT = (Path(__file__).resolve().parents[2] / "docs" / "admin-journeys.png"
              if os.environ.get("CHORUS_UPDATE_SCREENSHOTS") == "1"
              else Path("/tmp/chorus-admin-journeys.png"))

playwright_api: Any = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs Debian's chromium"),
]


async def test_console_shows_a_users_journey_and_the_funnel() -> None:
    async with run_node(journey_config()) as node, playwright_api.async_playwright() as pw:
        gap = Gap(node, "feed", [2, 3, 4])
        async with sdk_client(node, user="alice", events=ClientEvents(gap),
                              name="centrifuge-python") as sdk:
            _, events = await sdk.subscribe("feed", recoverable=True)
            await publish(node, "feed", 1)
            await next_event(events.publications)
            drop_transport(sdk.client)
            await gap.done.wait()
            await next_event(events.subscribed)
            assert (await next_event(events.subscribed)).recovered
            slow = await slow_reader(node, "alice", "firehose")
            await flood_until_slow(node, "firehose")
            await slow.close()
            async with sdk_client(node, user="bob"):  # connected, never subscribed
                await wait_until(lambda: has_events(node, "alice", "reconnect",
                                                    "slow_consumer", "first_publication"),
                                 "alice's journey", timeout=10)
                browser = await launch_chromium(pw)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                    await page.goto(f"http://127.0.0.1:{node.port}/admin/")
                    await page.fill("#password", ADMIN["password"])
                    await page.click("#login-form button[type=submit]")
                    card = page.locator("#journeys-card")
                    await card.wait_for(state="visible", timeout=10_000)
                    node_funnel = page.locator('#node-funnel [data-step="connected"] b')
                    await playwright_api.expect(node_funnel).to_have_text("4", timeout=10_000)
                    await playwright_api.expect(page.locator(
                        '#node-funnel [data-step="subscribed"] b')).to_have_text("3 (75 %)")

                    await page.fill("#journey-user-input", "alice")
                    await page.click("#journey-form button[type=submit]")
                    table = page.locator("#journey-events")
                    await playwright_api.expect(table.locator('tr[data-event="reconnect"]')
                                                ).to_contain_text("replayed 3", timeout=10_000)
                    await playwright_api.expect(table.locator(
                        'tr[data-event="slow_consumer"]')).to_have_count(1)
                    assert await page.locator("#journey-user .lane").count() == 3
                    await playwright_api.expect(page.locator(
                        '#user-funnel [data-step="first_publication"] b')).to_have_text(
                        "3 (100 %)")
                    assert "alice" in await page.locator("#journey-user").inner_text()
                    await card.screenshot(path=str(SCREENSHOT))
                finally:
                    await browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
