"""Pusher apps in ``/metrics`` (Prometheus text parser) and ``GET /admin/api/pusher``,
with a real pusher-js client connected and subscribed (see ``pusherkit``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.conftest import RunningNode, free_port, run_node
from tests.functional.pusherkit import (
    APP_ID,
    OTHER_ID,
    auth_backend,
    call,
    needs_pusher_js,
    pusher_config,
    pusher_js,
    server_lib,
)
from tests.waiting import wait_until

pytestmark = needs_pusher_js

ADMIN_SECRET = "admin-secret-for-tests-0123456789"
SCRAPE_TOKEN = "prometheus-token-for-tests-0123456789"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(node: RunningNode) -> tuple[Samples, set[str]]:
    """The samples, and every label name used by a ``chorus_pusher_*`` sample."""
    async with node.session.get(f"http://127.0.0.1:{node.port}/metrics",
                                headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}) as response:
        assert response.status == 200
        text = await response.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    labels = {name for (metric, items) in samples if metric.startswith("chorus_pusher_")
              for name, _ in items}
    return samples, labels


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


async def admin_pusher(node: RunningNode) -> dict[str, Any]:
    async with node.session.get(f"http://127.0.0.1:{node.port}/admin/api/pusher",
                                headers={"Authorization": f"Bearer {ADMIN_SECRET}"}) as response:
        assert response.status == 200
        return await response.json()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    """An endpoint answering 200 to every webhook POST, recording the bodies."""
    got: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


def config(hook_url: str) -> dict[str, Any]:
    out = pusher_config(webhooks=[{"url": hook_url, "event_types": ["channel_occupied"]}])
    out["admin"] = {"enabled": True, "secret": ADMIN_SECRET, "password": "console-password"}
    out["prometheus"] = {"token": SCRAPE_TOKEN}
    return out


async def test_metrics_and_admin_api_show_pusher_apps_sockets_and_channels() -> None:
    async with webhook_receiver() as (hook_url, hooks), run_node(config(hook_url)) as node, \
            auth_backend(node) as backend:
        async with pusher_js(node, backend) as js:
            await js.expect("connected")
            for channel in ("news", "private-orders"):
                await js.call("subscribe", channel=channel)
                await js.expect("members", lambda e, c=channel: e.get("channel") == c)
            reply = await js.call("trigger", channel="private-orders", event="client-typing",
                                  data={"on": True})
            assert reply["sent"] is True
            await call(server_lib(node).trigger, "news", "created", {"id": 1})
            await js.expect("message", lambda e: e["name"] == "created")
            await wait_until(lambda: len(hooks) >= 1, "the channel_occupied webhook")

            async def counted() -> bool:
                samples, _ = await scrape(node)
                return value(samples, "chorus_pusher_client_events_total", app=APP_ID) == 1 \
                    and value(samples, "chorus_pusher_webhooks_total", app=APP_ID,
                              result="sent") == len(hooks)

            await wait_until(counted, "the client event and the webhook counted")
            samples, labels = await scrape(node)
            assert value(samples, "chorus_pusher_connections", app=APP_ID) == 1
            assert value(samples, "chorus_pusher_connections", app=OTHER_ID) == 0
            assert value(samples, "chorus_pusher_channels", app=APP_ID) == 2
            assert value(samples, "chorus_pusher_channels", app=OTHER_ID) == 0
            assert value(samples, "chorus_pusher_api_calls_total", app=APP_ID) == 1
            assert value(samples, "chorus_pusher_webhooks_total", app=APP_ID,
                         result="failed") == 0
            assert labels == {"app", "result"}  # never a channel label

            apps = {a["id"]: a for a in (await admin_pusher(node))["apps"]}
            ours = apps[APP_ID]
            assert ours["connections"] == 1 and ours["channels_total"] == 2
            assert sorted(c["name"] for c in ours["channels"]) == ["news", "private-orders"]
            assert all(c["subscribers"] == 1 for c in ours["channels"])
            assert ours["client_events"] == 1 and ours["api_calls"] == 1
            assert apps[OTHER_ID]["connections"] == 0 and apps[OTHER_ID]["channels"] == []

        async def gone() -> bool:
            samples, _ = await scrape(node)
            return value(samples, "chorus_pusher_connections", app=APP_ID) == 0 \
                and value(samples, "chorus_pusher_channels", app=APP_ID) == 0

        await wait_until(gone, "the closed socket and its channels leaving the metrics")
        assert (await admin_pusher(node))["apps"][0]["channels"] == []
