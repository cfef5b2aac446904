"""``chorus admin`` against a live node, and ``POST /admin/api/drain``.

The CLI runs in a thread (it uses blocking urllib) while the node serves on this loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from broker.admin_cli import parse_metrics
from broker.cli import main
from tests.functional.conftest import RunningNode, next_event, run_node, sdk_client
from tests.functional.test_admin import BEARER, SECRET, call, config


async def chorus_admin(node: RunningNode, capsys: pytest.CaptureFixture[str], *args: str,
                       token: str = SECRET) -> tuple[int, str]:
    """Exit status and output (stdout + stderr) of ``chorus admin --url <node> ...``."""
    argv = ["admin", "--url", f"http://127.0.0.1:{node.port}", "--token", token, *args]
    status = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    return status, out.out + out.err


async def test_reads_are_checks_that_fail_until_they_hold(
        capsys: pytest.CaptureFixture[str]) -> None:
    async with run_node(config(prometheus={"insecure": True})) as node, \
            sdk_client(node, user="bob") as sdk:
        await sdk.subscribe("room:a")
        status, out = await chorus_admin(node, capsys, "status")
        assert status == 0 and f"{node.node.name}  ready" in out and "clients 1" in out
        assert await chorus_admin(node, capsys, "status", "--field", "num_clients") == (0, "1\n")
        assert (await chorus_admin(node, capsys, "metric", "chorus_connections",
                                   "--above", "0"))[0] == 0
        assert await chorus_admin(node, capsys, "metric", "chorus_connections",
                                  "--below", "1") == (1, "1\n")
        assert await chorus_admin(node, capsys, "metric", "chorus_client_commands_total",
                                  "--label", "method=connect") == (0, "1\n")
        status, out = await chorus_admin(node, capsys, "metric", "chorus_no_such_metric")
        assert status == 1 and "no sample of chorus_no_such_metric" in out
        assert (await chorus_admin(node, capsys, "nodes", "--expect", "1"))[0] == 0
        assert (await chorus_admin(node, capsys, "nodes", "--expect", "2"))[0] == 1
        assert await chorus_admin(node, capsys, "nodes", "--total-clients") == (0, "1\n")
        assert (await chorus_admin(node, capsys, "alerts", "--firing", "nope"))[0] == 1
        assert (await chorus_admin(node, capsys, "alerts", "--not-firing", "nope"))[0] == 0
        status, out = await chorus_admin(node, capsys, "connections", "--ids")
        assert (status, out) == (0, f"{sdk.client_id}\n")
        status, out = await chorus_admin(node, capsys, "publish", "room:a", '{"n": 1}')
        assert status == 0 and "offset 1" in out
        status, out = await chorus_admin(node, capsys, "status", token="wrong")
        assert status == 1 and "HTTP 401" in out


async def test_a_wait_retries_until_the_check_holds(
        capsys: pytest.CaptureFixture[str]) -> None:
    async with run_node(config(prometheus={"insecure": True})) as node:
        check = asyncio.create_task(chorus_admin(
            node, capsys, "metric", "chorus_connections", "--above", "0", "--wait", "20"))
        await asyncio.sleep(0.3)  # the check is polling (there is nothing to await)
        assert not check.done()
        async with sdk_client(node):
            assert (await asyncio.wait_for(check, 20))[0] == 0


async def test_drain_turns_the_node_unready_and_tells_clients_to_reconnect(
        capsys: pytest.CaptureFixture[str]) -> None:
    async with run_node(config(prometheus={"insecure": True})) as node, sdk_client(node) as sdk:
        status, out = await chorus_admin(node, capsys, "drain")
        assert status == 0 and "1 clients told to reconnect" in out
        connecting = await next_event(sdk.events.connecting)  # the SDK reconnects (elsewhere)
        while connecting.code != 3001:  # shutdown
            connecting = await next_event(sdk.events.connecting)
        async with node.session.get(f"http://127.0.0.1:{node.port}/ready") as response:
            assert response.status == 503 and "draining" in (await response.json())["problems"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await node.session.ws_connect(node.ws_url)
        assert refused.value.status == 503
        assert (await call(node, "POST", "publish", {"channel": "room:a", "data": {}}))[0] == 503
        status, out = await chorus_admin(node, capsys, "status", "--wait", "0.6")
        assert status == 1 and "NOT READY" in out and "problems: draining" in out
        assert (await call(node, "POST", "drain", {}, BEARER))[0] == 200  # idempotent


def test_parse_metrics_sums_the_samples_whose_labels_match() -> None:
    text = ('# TYPE chorus_client_commands counter\n'
            'chorus_client_commands_total{method="connect"} 3.0\n'
            'chorus_client_commands_total{method="subscribe"} 5.0\n'
            'chorus_client_commands_total_extra 9\n'
            'chorus_connections 2.0\n')
    labels: dict[str, Any] = {"method": "connect"}
    assert parse_metrics(text, "chorus_client_commands_total", labels) == 3.0
    assert parse_metrics(text, "chorus_client_commands_total", {}) == 8.0
    assert parse_metrics(text, "chorus_connections", {}) == 2.0
    assert parse_metrics(text, "chorus_nothing", {}) is None


def test_no_node_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHORUS_ADMIN", raising=False)
    assert main(["admin", "status"]) == 2
