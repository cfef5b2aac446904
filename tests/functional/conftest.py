"""A real Chorus node on a free loopback port, per test, with the config the test asks for."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientSession, web

from broker import Chorus
from broker.config import config_from_mapping
from broker.node import Node

SECRET = "test-secret-0123456789abcdef0123456789"
API_KEY = "test-api-key"


def base_config(**overrides: Any) -> dict[str, Any]:
    """A config mapping for tests: HS256 secret, API key, deep-merged ``overrides``."""
    config: dict[str, Any] = {
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": API_KEY},
        "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
    }
    return _merge(config, overrides)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningNode:
    chorus: Chorus
    port: int
    session: ClientSession

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def node(self) -> Node:
        return self.chorus.node

    async def api(self, method: str, params: dict[str, Any], key: str = API_KEY) -> Any:
        async with self.session.post(f"http://127.0.0.1:{self.port}/api/{method}", json=params,
                                     headers={"X-API-Key": key}) as response:
            return response.status, await response.json()


@asynccontextmanager
async def run_node(mapping: dict[str, Any],
                   setup: Callable[[Chorus], None] | None = None) -> AsyncIterator[RunningNode]:
    chorus = Chorus(config_from_mapping(mapping))
    if setup is not None:
        setup(chorus)
    runner = web.AppRunner(chorus.create_app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with ClientSession() as session:
            yield RunningNode(chorus, port, session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def chorus_node() -> AsyncIterator[RunningNode]:
    """A node with the default test config (token auth, subscribe allowed for clients)."""
    async with run_node(base_config()) as running:
        yield running
