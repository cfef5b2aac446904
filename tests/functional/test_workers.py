"""``chorus serve --workers 2``: one port, two processes joined by Redis, crash restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, WSMsgType

from bench.workers_restart import children, listeners
from tests.functional.conftest import wait_until
from tests.ports import reserve_port
from tests.redis_server import RedisUnavailable, redis_server

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    try:
        server_cm = redis_server()
        redis = server_cm.__enter__()
    except RedisUnavailable as error:
        pytest.skip(f"redis-server not available: {error}")
    reservation = reserve_port()  # held while the workers run: no one else takes it
    port = reservation.port
    config = tmp_path / "chorus.json"
    config.write_text(json.dumps({
        "client": {"insecure": True}, "http_api": {"key": "k"},
        "engine": {"type": "redis", "redis": {"address": [redis.url]}},
        "http_server": {"address": "127.0.0.1", "port": port}, "log": {"level": "warn"},
        "chorus": {"shutdown_timeout": "3s"}}))
    # A process group of its own: the teardown can reach workers the parent left behind.
    parent = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--config",
                               str(config), "--workers", "2"], start_new_session=True)
    try:
        yield parent, port
    finally:
        _stop_pool(parent)
        reservation.release()
        server_cm.__exit__(None, None, None)


def _stop_pool(parent: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator stops the pool (the parent stops its workers), then SIGKILL
    to the whole group. Killing only the parent would orphan its workers: they would
    go on listening and reconnecting to the stopped Redis for as long as the machine runs."""
    if parent.poll() is None:
        parent.send_signal(signal.SIGTERM)
        # the pool's own stop: drain, then its 15 s kill deadline
        with contextlib.suppress(subprocess.TimeoutExpired):
            parent.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(parent.pid, signal.SIGKILL)
    parent.wait()


async def test_two_workers_share_the_port_and_the_channel(
        pool: tuple[subprocess.Popen[bytes], int]) -> None:
    parent, port = pool
    await wait_until(lambda: len(listeners(port)) == 2, "both workers listening", 30)
    assert listeners(port) == children(parent.pid)
    async with ClientSession() as http:
        sockets = []
        for _ in range(6):  # the kernel spreads them over both workers
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
            await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"c"}}')
            sockets.append(ws)
        for ws in sockets:  # both replies, in one or two messages
            got = 0
            while got < 2:
                message = await ws.receive(timeout=10)
                got += len(message.data.split("\n"))
        for n in range(3):  # each publish may land on either worker
            async with http.post(f"http://127.0.0.1:{port}/api/publish",
                                 json={"channel": "c", "data": {"n": n}},
                                 headers={"X-API-Key": "k"}) as response:
                assert response.status == 200
        for ws in sockets:
            received = []
            while len(received) < 3:
                message = await ws.receive(timeout=10)
                assert message.type is WSMsgType.TEXT
                received += [orjson.loads(line)["push"]["pub"]["data"]["n"]
                             for line in message.data.split("\n") if "push" in line]
            assert received == [0, 1, 2]
            await ws.close()


async def test_a_killed_worker_is_replaced_and_sigterm_stops_all(
        pool: tuple[subprocess.Popen[bytes], int]) -> None:
    parent, port = pool
    await wait_until(lambda: len(listeners(port)) == 2, "both workers listening", 30)
    before = children(parent.pid)
    os.kill(min(before), signal.SIGKILL)
    await wait_until(lambda: len(listeners(port) - before) == 1, "a replacement listening", 30)
    assert len(children(parent.pid)) == 2
    parent.send_signal(signal.SIGTERM)
    assert await asyncio.get_running_loop().run_in_executor(None, parent.wait, 30) == 0
    assert listeners(port) == set()
