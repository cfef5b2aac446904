"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresUnavailable, postgres_server
from tests.redis_server import RedisUnavailable, redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server for the session (never the shared one on 6379). Tests
    keep apart by key prefix; skipped with the reason when the binary is missing."""
    try:
        with redis_server() as server:
            yield server.url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL cluster for the session (never the machine's own on 5432),
    run as an unprivileged user. Tests keep apart by table name; skipped with the reason
    when initdb/pg_ctl are missing."""
    try:
        with postgres_server() as server:
            yield server.dsn
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
