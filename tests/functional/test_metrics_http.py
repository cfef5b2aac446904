"""``GET /metrics`` over real HTTP (Prometheus text parser), ``/health`` and ``/ready``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.conftest import (
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

ADMIN_SECRET = "admin-secret-for-tests-0123456789"
SCRAPE_TOKEN = "prometheus-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}


def config(**overrides: Any) -> dict[str, Any]:
    overrides.setdefault("prometheus", {"token": SCRAPE_TOKEN})
    return base_config(admin={"secret": ADMIN_SECRET}, monitor={"interval": "50ms"},
                       channel={"namespaces": [{"name": "chat",
                                                "allow_subscribe_for_client": True}]},
                       **overrides)


async def scrape(node: RunningNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with node.session.get(f"http://127.0.0.1:{node.port}/metrics",
                                headers=BEARER) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_prometheus_token_and_nothing_else_opens_them() -> None:
    async with run_node(config()) as node:
        url = f"http://127.0.0.1:{node.port}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Bearer {ADMIN_SECRET}"},  # not the scrape token
                        {"Authorization": SCRAPE_TOKEN}):  # no "Bearer"
            async with node.session.get(url, headers=headers) as response:
                assert response.status == 401, headers
                assert "prometheus.token" in await response.text()
        async with node.session.get(url, headers=BEARER) as response:
            assert response.status == 200


async def test_metrics_without_a_token_refuse_every_scrape_naming_the_key() -> None:
    async with run_node(config(prometheus={})) as node:
        url = f"http://127.0.0.1:{node.port}/metrics"
        for headers in ({}, {"Authorization": f"Bearer {ADMIN_SECRET}"},
                        {"Authorization": "Bearer "}):
            async with node.session.get(url, headers=headers) as response:
                assert response.status == 401
                assert "prometheus.token is not set" in await response.text()


async def test_metrics_can_be_opened_or_turned_off_by_config() -> None:
    async with run_node(config(prometheus={"insecure": True})) as node, \
            node.session.get(f"http://127.0.0.1:{node.port}/metrics") as response:
        assert response.status == 200
        assert "chorus_connections" in await response.text()
    async with run_node(config(prometheus={"enabled": False})) as node, \
            node.session.get(f"http://127.0.0.1:{node.port}/metrics", headers=BEARER) as response:
        assert response.status == 404


async def test_metric_values_move_with_traffic() -> None:
    async with run_node(config()) as node:
        before = await scrape(node)
        for name in ("chorus_connections", "chorus_subscriptions", "chorus_channels",
                     "chorus_publications_total", "chorus_deliveries_total",
                     "chorus_loop_lag_seconds", "chorus_engine_up", "chorus_outbox_bytes",
                     "chorus_slow_consumer_disconnects_total", "chorus_dead_letters_total",
                     "chorus_publish_deliver_seconds_count", "process_resident_memory_bytes"):
            assert any(key[0] == name for key in before), f"{name} missing"
        assert value(before, "chorus_connections") == 0
        async with sdk_client(node, user="ann") as sdk:
            _, events = await sdk.subscribe("chat:room")
            for i in range(8):
                assert (await node.api("publish", {"channel": "chat:room", "data": {"i": i}}))[0] \
                    == 200
            for _ in range(8):
                await next_event(events.publications)
            await wait_until(lambda: node.node.metrics.board.latest.get("channels") == 1,
                             "a monitor sample with the channel")
            after = await scrape(node)
        assert value(after, "chorus_connections") == 1
        assert value(after, "chorus_users") == 1
        assert value(after, "chorus_subscriptions") == 1
        assert value(after, "chorus_channels") == 1
        assert value(after, "chorus_publications_total") == 8
        assert value(after, "chorus_deliveries_total") == 8
        assert value(after, "chorus_messages_in_total", namespace="chat") == 8
        assert value(after, "chorus_client_commands_total", method="subscribe") == 1
        assert value(after, "chorus_publish_deliver_seconds_count") == 1  # 1 in 8 sampled
        assert value(after, "chorus_http_request_seconds_count",
                     endpoint="/api/publish", status="200") == 8
        assert value(after, "chorus_actors", kind="connection") == 1
        assert value(after, "chorus_engine_round_trip_seconds_count") >= 1


async def test_health_and_ready() -> None:
    async with run_node(config()) as node:
        base = f"http://127.0.0.1:{node.port}"
        async with node.session.get(f"{base}/health") as response:
            assert response.status == 200
        async with node.session.get(f"{base}/ready") as response:
            report = await response.json()
            assert response.status == 200 and report["ready"] is True
            assert report["checks"] == {"started": True, "engine_link": True, "tree": True,
                                        "draining": False}
        node.node.engine.link_up = False  # type: ignore[attr-defined]
        async with node.session.get(f"{base}/ready") as response:
            assert response.status == 503
            assert "engine link is down" in (await response.json())["problems"]
        del node.node.engine.link_up  # type: ignore[attr-defined]
        node.node.runtime.stop_actor("chorus/monitors", force=True)
        async with node.session.get(f"{base}/ready") as response:
            assert response.status == 503
            assert (await response.json())["problems"] == ["chorus/monitors is not running"]
        node.node.draining = True
        async with node.session.get(f"{base}/ready") as response:
            assert response.status == 503
            assert "draining" in (await response.json())["problems"]


@pytest.mark.parametrize("actor", ["shards/shard-3", "engine/link", "monitors/node",
                                   "monitors/alerts", "shards"])
async def test_ready_is_false_while_a_permanent_child_is_missing(actor: str) -> None:
    actor_id = f"chorus/{actor}"
    async with run_node(config()) as node:
        url = f"http://127.0.0.1:{node.port}/ready"
        runtime = node.node.runtime
        runtime.stop_actor(actor_id, force=True)  # the supervisor keeps it, not running
        await wait_until(lambda: actor_id not in runtime.registry, f"{actor_id} to stop")
        async with node.session.get(url) as response:
            report = await response.json()
            assert response.status == 503 and report["checks"]["tree"] is False
            assert report["problems"] == [f"{actor_id} is not running"]
        runtime.restart_actor(actor_id)
        async with node.session.get(url) as response:
            assert response.status == 200, await response.text()


async def test_grafana_dashboard_uses_only_exposed_metrics() -> None:
    dashboard = (Path(__file__).parents[2] / "deploy/grafana/chorus-dashboard.json").read_text()
    used = set(re.findall(r"\b((?:chorus|process)_[a-z_]+)", dashboard))
    async with run_node(config()) as node, \
            node.session.get(f"http://127.0.0.1:{node.port}/metrics", headers=BEARER) as response:
        families = list(text_string_to_metric_families(await response.text()))
    exposed = {f.name for f in families} | {s.name for f in families for s in f.samples}
    optional = {"chorus_engine_reconnects_total"}  # only engines that reconnect have it
    base = {name: re.sub(r"_(total|bucket|count)$", "", name) for name in used - optional}
    missing = {name for name, family in base.items()
               if name not in exposed and family not in exposed}
    assert not missing, f"dashboard queries metrics that /metrics lacks: {sorted(missing)}"
