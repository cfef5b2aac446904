"""What an operator sees of the proxies: the admin API's ``proxies`` view, the Prometheus
metrics, and the console's Proxies section in headless Chromium (skipped without it)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
from centrifuge import ReplyError

from tests.functional.browser import CHROMIUM, launch_chromium
from tests.functional.conftest import base_config, run_node, sdk_client
from tests.functional.proxy_backend import Backend, backend

SECRET = "admin-secret-for-tests-0123456789"
PASSWORD = "console-password"


def config(b: Backend) -> dict[str, Any]:
    return base_config(
        admin={"enabled": True, "password": PASSWORD, "secret": SECRET},
        prometheus={"insecure": True},
        proxies=[{"name": "app", "endpoint": b.url("app"), "breaker_failures": 2}],
        rpc={"without_namespace": {"proxy_enabled": True, "proxy_name": "app"}})


async def calls_with_one_failure(node: Any, b: Backend) -> None:
    async with sdk_client(node) as client:
        b.answers["app"] = {"result": {"data": 1}}
        await client.client.rpc("a", None)
        b.answers["app"] = 500
        with pytest.raises(ReplyError):
            await client.client.rpc("b", None)


async def test_admin_view_and_metrics_show_calls_errors_and_the_breaker() -> None:
    async with backend() as b, run_node(config(b)) as node:
        await calls_with_one_failure(node, b)
        async with node.session.get(f"http://127.0.0.1:{node.port}/admin/api/proxies",
                                    headers={"Authorization": f"Bearer {SECRET}"}) as response:
            assert response.status == 200
            [app] = (await response.json())["proxies"]
        assert (app["name"], app["endpoint"], app["breaker"]) == ("app", b.url("app"), "closed")
        rpc = app["kinds"]["rpc"]
        assert (rpc["calls"], rpc["errors"], rpc["error_reasons"]) == (2, 1, {"status": 1})
        async with node.session.get(f"http://127.0.0.1:{node.port}/metrics") as response:
            text = await response.text()
        assert 'chorus_proxy_calls_total{kind="rpc",proxy="app"} 2.0' in text
        assert 'chorus_proxy_errors_total{kind="rpc",proxy="app",reason="status"} 1.0' in text
        assert 'chorus_proxy_breaker_state{proxy="app"} 0.0' in text
        assert 'chorus_proxy_call_seconds_count{kind="rpc",proxy="app"} 2.0' in text


playwright_api: Any = None
with contextlib.suppress(ImportError):  # only the console test needs Playwright
    from playwright import async_api as playwright_api


@pytest.mark.browser
@pytest.mark.skipif(playwright_api is None or not os.access(CHROMIUM, os.X_OK),
                    reason="needs Playwright and Debian's chromium")
async def test_console_shows_the_proxies_section() -> None:
    async with backend() as b, run_node(config(b)) as node:
        await calls_with_one_failure(node, b)
        async with playwright_api.async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{node.port}/admin/")
                await page.fill("#password", PASSWORD)
                await page.click("#login-form button[type=submit]")
                row = page.locator('[data-proxy="app"]')
                await row.wait_for(state="visible", timeout=10_000)
                cells = await row.locator("td").all_inner_texts()
                assert cells[0] == "app" and cells[2] == "closed" and cells[4:7] == [
                    "rpc", "2", "1"]
            finally:
                await browser.close()
