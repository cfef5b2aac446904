"""Fixtures of the cluster tests: a private Redis (skipped without redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer, RedisUnavailable, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A private, empty redis-server for one test (tests may kill and respawn it)."""
    try:
        with redis_server() as server:
            yield server
    except RedisUnavailable as error:
        pytest.skip(f"redis-server not available: {error}")


@pytest.fixture
def channels() -> list[str]:
    """Fresh channel names (history-enabled by the node config)."""
    tag = uuid.uuid4().hex[:6]
    return [f"news-{tag}", f"chat-{tag}", f"ticks-{tag}"]
