"""The redis-server test helper: a private, working server that is stopped afterwards."""

from __future__ import annotations

import shutil

import pytest
import redis.asyncio as aioredis

from tests.redis_server import DEFAULT_REDIS_PORT, redis_server

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary"),
]


async def test_redis_url_fixture_serves_a_private_server(redis_url: str) -> None:
    assert f":{DEFAULT_REDIS_PORT}/" not in redis_url
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping()
        assert await client.config_get("save") == {"save": ""}
    finally:
        await client.aclose()


def test_helper_stops_server_and_removes_its_dir() -> None:
    with redis_server() as server:
        assert server.port != DEFAULT_REDIS_PORT
        assert server.process.poll() is None and server.workdir.is_dir()
    assert server.process.poll() is not None
    assert not server.workdir.exists()
