"""The redis-server test helper: a private, working server that is stopped afterwards, on a
reserved port (tests.ports) that it really serves."""

from __future__ import annotations

import os
import shutil

import pytest
import redis
import redis.asyncio as aioredis

import tests.redis_server as redis_server_module
from tests.ports import PortReservation, _ephemeral_range, _lock, reserve_port
from tests.redis_server import CLUSTER_BUS_OFFSET, DEFAULT_REDIS_PORT, redis_server

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


def test_reserved_ports_are_outside_the_ephemeral_range_and_exclusive() -> None:
    ephemeral = _ephemeral_range()
    held = [reserve_port() for _ in range(20)]
    try:
        ports = [r.port for r in held]
        assert len(set(ports)) == len(ports)
        assert not any(p in ephemeral or p == DEFAULT_REDIS_PORT for p in ports)
        # the lock is what excludes others (other processes take the same flock)
        assert _lock(ports[0]) is None
    finally:
        for reservation in held:
            reservation.release()
    fd = _lock(ports[0])
    assert fd is not None  # released: reservable again
    os.close(fd)


def test_cluster_reservation_holds_the_bus_port_too() -> None:
    reservation = reserve_port((0, CLUSTER_BUS_OFFSET))
    try:
        bus = reservation.port + CLUSTER_BUS_OFFSET
        assert bus <= 65535 and bus not in _ephemeral_range()
        assert _lock(bus) is None
    finally:
        reservation.release()


def test_server_that_lost_its_port_is_started_on_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A PING on the port would be answered by the squatter: readiness must name our pid."""
    with redis_server() as squatter:
        handed: list[int] = []

        def squatted_first(offsets: tuple[int, ...] = (0,)) -> PortReservation:
            handed.append(0)  # the first number handed out is already bound by another
            return PortReservation(squatter.port, []) if len(handed) == 1 else reserve_port(offsets)

        monkeypatch.setattr(redis_server_module, "reserve_port", squatted_first)
        with redis_server() as mine:
            assert len(handed) == 2 and mine.port != squatter.port
            client = redis.Redis(port=mine.port)
            try:
                assert int(client.info("server")["process_id"]) == mine.process.pid
            finally:
                client.close()
