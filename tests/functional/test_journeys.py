"""Connection journeys on one node (memory engine), with the official Python SDK and a
raw WebSocket client: the events of a scripted session, the aggregates, the admin API,
the server API, the JSON Lines export, the reconnect storm alert and the switch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientWebSocketResponse

from broker.auth import make_token
from broker.cli import main
from tests.functional.conftest import (
    SECRET,
    WAIT,
    ClientEvents,
    RunningNode,
    base_config,
    drop_transport,
    next_event,
    run_node,
    sdk_client,
)
from tests.functional.test_sdk_history_recovery import Gap, publish
from tests.waiting import wait_until

ADMIN = {"enabled": True, "password": "pw", "secret": "admin-secret-0123456789"}


def journey_config(client: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return base_config(
        admin=ADMIN,
        client={"queue_max_size": 256 * 1024, **(client or {})},
        channel={"without_namespace": {"history_size": 100, "history_ttl": "60s",
                                       "allow_recovery": True}},
        **extra)


async def admin_get(node: RunningNode, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN['secret']}"}
    async with node.session.get(f"http://127.0.0.1:{node.port}/admin/api/{path}",
                                headers=headers) as response:
        body = await response.read()
        if response.content_type == "application/x-ndjson":
            return response.status, [orjson.loads(line) for line in body.splitlines()]
        return response.status, orjson.loads(body)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


async def journey(node: RunningNode, user: str) -> dict[str, Any]:
    status, body = await admin_get(node, f"journeys?user={user}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def has_events(node: RunningNode, user: str, *wanted: str) -> bool:
    got = kinds((await journey(node, user))["events"])
    return all(got.count(kind) >= wanted.count(kind) for kind in set(wanted))


async def slow_reader(node: RunningNode, user: str, channel: str) -> ClientWebSocketResponse:
    """A raw client of ``user`` subscribed to ``channel`` that never reads again."""
    ws = await node.session.ws_connect(node.ws_url)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, user)}})
                      + "\n" + json.dumps({"id": 2, "subscribe": {"channel": channel}}))
    seen = 0
    while seen < 2:
        message = await ws.receive(timeout=WAIT)
        seen += len([line for line in message.data.split("\n") if line])
    return ws


async def flood_until_slow(node: RunningNode, channel: str) -> None:
    big = "y" * 60_000
    for _ in range(500):  # kernel buffers may absorb a few MB first
        if node.node.slow_consumers:
            return
        status, _ = await node.api("publish", {"channel": channel, "data": big})
        assert status == 200
    raise AssertionError("the reader was never dropped as slow")


async def test_a_scripted_session_reads_as_its_journey() -> None:
    async with run_node(journey_config()) as node:
        gap = Gap(node, "feed", [2, 3])
        async with sdk_client(node, user="alice", events=ClientEvents(gap),
                              name="journey-test") as sdk:
            _, events = await sdk.subscribe("feed", recoverable=True)
            await publish(node, "feed", 1)
            assert (await next_event(events.publications)).offset == 1
            first_client = sdk.client_id
            drop_transport(sdk.client)  # the network drops; the SDK reconnects and recovers
            await gap.done.wait()
            await next_event(events.subscribed)
            again = await next_event(events.subscribed)
            assert again.was_recovering and again.recovered
            await wait_until(lambda: has_events(node, "alice", "connect", "connect",
                                                "subscribe", "subscribe", "disconnect",
                                                "reconnect", "first_publication"),
                             "alice's journey recorded", timeout=WAIT)
            ws = await slow_reader(node, "alice", "firehose")
            await flood_until_slow(node, "firehose")
            await ws.close()
            await wait_until(lambda: has_events(node, "alice", "slow_consumer",
                                                "disconnect", "disconnect"),
                             "the slow consumer in alice's journey", timeout=WAIT)
            second_client = sdk.client_id

        body = await journey(node, "alice")
        events_ = body["events"]
        connects = [e for e in events_ if e["event"] == "connect"]
        assert connects[0]["client"] == first_client and connects[0]["sdk"] == "journey-test"
        assert connects[0]["transport"] == "websocket" and connects[0]["protocol"] == "json"
        assert 0 <= connects[0]["time_to_connect"] < WAIT
        subs = [e for e in events_ if e["event"] == "subscribe" and e["channel"] == "feed"]
        assert not subs[0]["recovering"]
        assert subs[1]["recovering"] and subs[1]["recovered"] and subs[1]["replayed"] == 2
        assert subs[1]["client"] == second_client
        dropped = next(e for e in events_ if e["event"] == "disconnect")
        assert dropped["client"] == first_client
        assert (dropped["code"], dropped["reason"]) == (1006, "connection lost (no close frame)")
        reconnect = next(e for e in events_ if e["event"] == "reconnect")
        assert reconnect["client"] == second_client
        assert reconnect["previous_client"] == first_client
        assert 0 <= reconnect["time_away"] < WAIT
        assert reconnect["missed"] == {"publications_replayed": 2, "recovered": ["feed"],
                                       "unrecovered": []}
        firsts = [e for e in events_ if e["event"] == "first_publication"]
        assert [(e["client"], e["channel"]) for e in firsts][:1] == [(first_client, "feed")]
        slow = next(e for e in events_ if e["event"] == "slow_consumer")
        assert slow["code"] == 3008
        assert any(e["event"] == "disconnect" and e["code"] == 3008 and
                   e["client"] == slow["client"] for e in events_)
        # the slow reader got publications too (until it stopped reading)
        assert body["funnel"] == {"connected": 3, "subscribed": 3, "first_publication": 3}
        times = [e["t"] for e in events_]
        assert times == sorted(times)

        summary = body["summary"]
        assert summary["connects"] == 3 and summary["connect_success_ratio"] == 1.0
        assert summary["recoveries"] == 1 and summary["recovery_success_ratio"] == 1.0
        assert summary["reconnects"] >= 1 and summary["slow_consumers"] == 1
        assert summary["disconnects_by_code"]["1006"] == 1
        assert summary["disconnects_by_code"]["3008"] == 1
        assert summary["time_to_connect"]["count"] == 3
        assert summary["time_to_connect"]["p50"] is not None
        assert summary["time_to_first_publication"]["count"] == 3
        assert summary["funnel"] == body["funnel"]


async def test_auth_failures_unsubscribes_and_limits_are_recorded() -> None:
    config = journey_config(client={"channel_limit": 1})
    async with run_node(config) as node:
        ws = await node.session.ws_connect(node.ws_url)
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": "not-a-token"}}))
        await ws.receive(timeout=WAIT)
        assert ws.close_code == 3500
        async with sdk_client(node, user="carol") as sdk:
            sub, _ = await sdk.subscribe("one")
            await sdk.subscribe("two", wait=False)  # over client.channel_limit: 106
            await wait_until(lambda: has_events(node, "carol", "limit"),
                             "the channel limit", timeout=WAIT)
            await sub.unsubscribe()
            await wait_until(lambda: has_events(node, "carol", "unsubscribe"),
                             "the unsubscribe", timeout=WAIT)
        body = await journey(node, "carol")
        limit = next(e for e in body["events"] if e["event"] == "limit")
        assert limit["code"] == 106 and not limit["refused"]
        gone = next(e for e in body["events"] if e["event"] == "unsubscribe")
        assert gone["channel"] == "one"

        status, overview = await admin_get(node, "journeys")
        assert status == 200
        failure = next(e for e in overview["events"] if e["event"] == "auth_failure")
        assert failure["code"] == 3500 and failure["user"] == ""
        summary = overview["summary"]
        assert summary["auth_failures"] == {"3500": 1}
        assert summary["connect_attempts"] == summary["connects"] + 1
        assert summary["limits"] == {"106": 1}


async def test_server_api_and_jsonl_export_serve_the_same_events() -> None:
    async with run_node(journey_config()) as node:
        async with sdk_client(node, user="dave") as sdk:
            await sdk.subscribe("news")
            await wait_until(lambda: has_events(node, "dave", "connect", "subscribe"),
                             "dave's journey", timeout=WAIT)
        status, body = await node.api("journeys", {"user": "dave", "limit": 50})
        assert status == 200, body
        result = body["result"]
        assert kinds(result["events"])[:2] == ["connect", "subscribe"]
        assert result["funnel"]["connected"] == 1 and "summary" in result
        status, lines = await admin_get(node, "journeys.jsonl?user=dave")
        assert status == 200
        assert [e["event"] for e in lines] == kinds(result["events"])
        status, error = await node.api("journeys", {"limit": "many"})
        assert status == 200 and error["error"]["code"] == 107
        async with node.session.get(f"http://127.0.0.1:{node.port}/admin/api/journeys") as r:
            assert r.status == 401  # behind the admin auth


async def test_reconnect_storm_fires_the_alert() -> None:
    config = journey_config(journeys={"storm_threshold": 3, "storm_window": "30s"},
                            monitor={"interval": "50ms"})
    async with run_node(config) as node:
        for _ in range(4):  # connect, drop, reconnect: each reconnect counts
            async with sdk_client(node, user="erin"):
                pass
        await wait_until(lambda: any(a.rule.name == "reconnect_storm"
                                     for a in node.node.metrics.board.active_alerts),
                         "the reconnect_storm alert", timeout=WAIT)
        status, alerts = await admin_get(node, "alerts")
        assert status == 200 and "reconnect_storm" in json.dumps(alerts)


async def test_journeys_off_records_nothing() -> None:
    async with run_node(journey_config(journeys={"enabled": False})) as node:
        assert node.node.journal is None
        assert "chorus/monitors/journal" not in node.node.runtime.registry
        async with sdk_client(node, user="frank") as sdk:
            await sdk.subscribe("news")
        status, body = await admin_get(node, "journeys?user=frank")
        assert status == 404 and "journeys.enabled" in body["error"]
        status, body = await node.api("journeys", {"user": "frank"})
        assert body["error"]["code"] == 108


async def test_ring_size_and_reconnect_window_bound_the_memory_journal() -> None:
    config = journey_config(journeys={"ring_size": 6, "reconnect_window": "200ms",
                                      "storm_window": "100ms"})
    async with run_node(config) as node:
        async with sdk_client(node, user="gina"):
            pass
        await wait_until(lambda: has_events(node, "gina", "disconnect"), "gina's disconnect",
                         timeout=WAIT)
        await asyncio.sleep(0.3)  # time must pass: longer away than the reconnect window
        async with sdk_client(node, user="gina"):
            pass
        await wait_until(lambda: has_events(node, "gina", "disconnect", "disconnect"),
                         "gina's second disconnect", timeout=WAIT)
        body = await journey(node, "gina")
        assert "reconnect" not in kinds(body["events"])
        assert body["summary"]["reconnects"] == 0
        for n in range(3):
            async with sdk_client(node, user=f"h{n}"):
                pass
        await wait_until(lambda: len(node.node.journeys.store.ring) == 6,  # type: ignore[union-attr]
                         "a full ring", timeout=WAIT)
        status, overview = await admin_get(node, "journeys?limit=100")
        assert status == 200 and len(overview["events"]) == 6
        assert overview["summary"]["events"] > 6  # aggregates keep counting


async def test_chorus_journeys_prints_json_lines(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    mapping = journey_config()
    async with run_node(mapping) as node:
        async with sdk_client(node, user="ivy") as sdk:
            await sdk.subscribe("news")
        await wait_until(lambda: has_events(node, "ivy", "connect", "subscribe", "disconnect"),
                         "ivy's journey", timeout=WAIT)
        config = tmp_path / "chorus.json"
        config.write_text(json.dumps(mapping))
        url = f"http://127.0.0.1:{node.port}"
        status = await asyncio.to_thread(main, ["journeys", "-c", str(config), "--url", url,
                                                "--user", "ivy", "--jsonl"])
        assert status == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert kinds(lines) == ["connect", "subscribe", "disconnect"]
        assert {e["user"] for e in lines} == {"ivy"}
        status = await asyncio.to_thread(main, ["journeys", "-c", str(config), "--url", url])
        assert status == 0
        assert json.loads(capsys.readouterr().out)["summary"]["connects"] == 1
    status = await asyncio.to_thread(main, ["journeys", "-c", str(config), "--url", url])
    assert status == 1 and "journeys" in capsys.readouterr().err  # the node is gone
