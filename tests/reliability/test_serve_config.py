"""``chorus serve``, as a real process, honours ``http_server.address`` (the interface
it binds), ``log.level`` (what it logs) and ``chorus.shutdown_timeout`` (how long the
drain may take)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.functional.conftest import API_KEY, SECRET
from tests.reliability.helpers import RawSocket, ServedNode, serve

CHUNK = "s" * 64 * 1024
CONFIG: dict[str, Any] = {"client": {"token": {"hmac_secret_key": SECRET}},
                          "http_api": {"key": API_KEY}}


async def reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def stop(served: ServedNode) -> None:
    served.process.terminate()
    await served.process.wait()


async def test_http_server_address_is_the_only_interface_bound(tmp_path: Path) -> None:
    """Every 127.x.y.z address is this host's loopback: bound to 127.0.0.1 only, the
    node does not answer on 127.0.0.2; bound to all interfaces, it does."""
    only = await serve({**CONFIG, "http_server": {"address": "127.0.0.1"}}, str(tmp_path))
    try:
        assert await reachable("127.0.0.1", only.port)
        assert not await reachable("127.0.0.2", only.port)
    finally:
        await stop(only)
    everywhere = await serve(CONFIG, str(tmp_path))
    try:
        assert await reachable("127.0.0.2", everywhere.port)
    finally:
        await stop(everywhere)


@pytest.mark.parametrize(("level", "logged"), [("info", True), ("warn", False)])
async def test_log_level_filters_what_is_logged(tmp_path: Path, level: str,
                                                 logged: bool) -> None:
    served = await serve(CONFIG, str(tmp_path), log_level=level)  # --log-level = log.level
    await stop(served)
    output = served.output()
    assert ("INFO chorus" in output) is logged, output[-2000:]
    assert ("serving on http://" in output) is logged


async def test_shutdown_timeout_bounds_the_drain(tmp_path: Path) -> None:
    """A subscriber that stopped reading cannot take the shutdown close frame (its
    socket buffers are full): the drain waits for it until ``chorus.shutdown_timeout``,
    not longer (it used to take about three times as long)."""
    timeout = 1.0
    config = {**CONFIG, "chorus": {"shutdown_timeout": f"{timeout}s"},
              "client": {**CONFIG["client"], "queue_max_size": 256 * 1024 * 1024},
              "websocket": {"write_timeout": "60s"},
              "channel": {"without_namespace": {"allow_subscribe_for_client": True}}}
    served = await serve(config, str(tmp_path), log_level="warn")
    stuck = await RawSocket.open(served.port, limit=16 * 1024)
    try:
        await stuck.connect("stuck")
        stuck.send_text(json.dumps({"id": 2, "subscribe": {"channel": "bulk"}}))
        assert "subscribe" in (await stuck.read_json())[0]
        async with ClientSession() as session:
            url = f"http://127.0.0.1:{served.port}/api/publish"
            for _ in range(600):  # 38 MB: more than the kernels' socket buffers hold
                async with session.post(url, json={"channel": "bulk", "data": CHUNK},
                                        headers={"X-API-Key": API_KEY}) as response:
                    assert response.status == 200
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(served.process.wait(), 60)
        took = time.monotonic() - started
    finally:
        stuck.close()
    assert took < timeout + 1.0, f"exit took {took:.2f}s"  # + process teardown
