"""The PostgreSQL outbox consumer against a real PostgreSQL cluster and real SDK clients.

Each test makes its own outbox table in the session's private cluster (``postgres_dsn``)
and a node (memory engine) consuming it; rows are inserted the way an application does,
inside its own transactions.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import asyncpg
import pytest

from broker.consumers.postgres import outbox_ddl
from broker.names import consumer_id
from tests.functional.conftest import (
    WAIT,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

_tables = itertools.count(1)


def consumer(dsn: str, table: str, **postgresql: Any) -> dict[str, Any]:
    return {"name": "outbox", "enabled": True, "type": "postgresql",
            "postgresql": {"dsn": dsn, "outbox_table_name": table,
                           "partition_poll_interval": "50ms", **postgresql}}


@pytest.fixture
async def table(postgres_dsn: str) -> str:
    """A fresh outbox table (with its NOTIFY trigger on channel ``<table>_ch``)."""
    name = f"outbox_{next(_tables)}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.execute(outbox_ddl(name, f"{name}_ch"))
    finally:
        await conn.close()
    return name


async def insert(dsn: str, table: str, rows: list[tuple[str, Any, int]], *,
                 rollback: bool = False) -> None:
    """Insert ``(method, payload, partition)`` rows in one transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.executemany(
            f"INSERT INTO {table} (method, payload, partition) VALUES ($1, $2, $3)",
            [(m, json.dumps(p), part) for m, p, part in rows])
        await (tx.rollback() if rollback else tx.commit())
    finally:
        await conn.close()


async def remaining(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def publish(channel: str, n: int, partition: int = 0) -> tuple[str, Any, int]:
    return ("publish", {"channel": channel, "data": {"n": n}}, partition)


async def received(events: Any, count: int) -> list[Any]:
    return [(await next_event(events.publications)).data for _ in range(count)]


async def test_committed_rows_reach_subscribers_in_order_and_leave_the_table(
        postgres_dsn: str, table: str) -> None:
    config = base_config(consumers=[consumer(postgres_dsn, table, num_partitions=2)])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await insert(postgres_dsn, table, [publish("news", 999)], rollback=True)
        await insert(postgres_dsn, table, [publish("news", n, n % 2) for n in range(10)])
        await insert(postgres_dsn, table, [publish("news", n) for n in range(10, 20)])
        got = await received(news, 20)
        ns = [d["n"] for d in got]
        assert sorted(ns) == list(range(20))  # the rolled-back row never appears
        for part in (0, 1):  # in id order within each partition
            mine = [n for n in ns if (n % 2 if n < 10 else 0) == part]
            assert mine == sorted(mine)
        await wait_until(_empty(postgres_dsn, table), "the table to empty", timeout=WAIT)
        stats = running.node.consumers.get("outbox")
        assert stats.processed == 20 and stats.redeliveries == 0 and stats.invalid == 0
        assert news.publications.empty()


def _empty(dsn: str, table: str) -> Any:
    async def check() -> bool:
        return await remaining(dsn, table) == 0
    return check


async def test_notify_wakes_the_consumer_long_before_its_poll_interval(
        postgres_dsn: str, table: str) -> None:
    config = base_config(consumers=[consumer(postgres_dsn, table,
                                             partition_poll_interval="60s",
                                             partition_notification_channel=f"{table}_ch")])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await wait_until(lambda: running.node.consumers.get("outbox").owned == {"0"},
                         "the partition taken and polled once", timeout=WAIT)
        await insert(postgres_dsn, table, [publish("news", 1)])
        assert (await received(news, 1)) == [{"n": 1}]  # within WAIT, not 60 s


async def test_rows_that_can_never_be_published_are_dropped_without_blocking(
        postgres_dsn: str, table: str) -> None:
    config = base_config(consumers=[consumer(postgres_dsn, table)])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await insert(postgres_dsn, table, [
            ("no_such_method", {"channel": "news", "data": 1}, 0),
            ("publish", {"data": {"n": 0}}, 0),  # no channel
            ("publish", {"channel": "nsmissing:x", "data": {"n": 0}}, 0),  # unknown namespace
            publish("news", 1)])
        assert (await received(news, 1)) == [{"n": 1}]
        stats = running.node.consumers.get("outbox")
        await wait_until(lambda: stats.invalid == 3, "three rows dropped", timeout=WAIT)
        await wait_until(_empty(postgres_dsn, table), "the table to empty", timeout=WAIT)


async def test_rows_published_but_not_deleted_are_redelivered_once_and_suppressed(
        postgres_dsn: str, table: str) -> None:
    """The first DELETE fails after the rows were published (as when the node dies
    before committing): the rows are delivered again by the next batch and the engine
    suppresses them by their idempotency keys, so subscribers get each row once."""
    conn = await asyncpg.connect(postgres_dsn)
    try:  # a sequence is not rolled back: the trigger fails the first DELETE only
        await conn.execute(f"""
            CREATE SEQUENCE {table}_fail;
            CREATE FUNCTION {table}_fail_once() RETURNS trigger AS $$
            BEGIN
                IF nextval('{table}_fail') = 1 THEN RAISE EXCEPTION 'injected'; END IF;
                RETURN NULL;
            END; $$ LANGUAGE plpgsql;
            CREATE TRIGGER {table}_fail_once BEFORE DELETE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_fail_once();""")
    finally:
        await conn.close()
    config = base_config(consumers=[consumer(postgres_dsn, table)])
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await insert(postgres_dsn, table, [publish("news", n) for n in range(3)])
        assert [d["n"] for d in await received(news, 3)] == [0, 1, 2]
        await wait_until(_empty(postgres_dsn, table), "the table to empty", timeout=WAIT)
        stats = running.node.consumers.get("outbox")
        assert stats.redeliveries == 3 and stats.errors >= 1
        assert "injected" in stats.last_error
        assert news.publications.empty()


async def test_broadcast_rows_and_bytea_payloads(postgres_dsn: str) -> None:
    """Centrifugo's own test table keeps the payload as BYTEA: that works too."""
    name = f"outbox_bytea_{next(_tables)}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"CREATE TABLE {name} (id BIGSERIAL PRIMARY KEY, method text NOT "
                           "NULL, payload BYTEA NOT NULL, partition INTEGER NOT NULL)")
        config = base_config(consumers=[consumer(postgres_dsn, name)])
        async with run_node(config) as running, sdk_client(running) as client:
            _, a = await client.subscribe("a")
            _, b = await client.subscribe("b")
            # Inserted once both subscriptions stand: the channels keep no history, so a
            # row consumed before that (a loaded machine) would reach nobody.
            await conn.execute(f"INSERT INTO {name} (method, payload, partition) VALUES "
                               "('broadcast', $1, 0)",
                               json.dumps({"channels": ["a", "b"], "data": {"x": 1}}).encode())
            assert (await received(a, 1)) == [{"x": 1}]
            assert (await received(b, 1)) == [{"x": 1}]
    finally:
        await conn.close()



async def test_a_database_that_is_down_is_retried_and_counted_not_fatal() -> None:
    from tests.functional.conftest import free_port

    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens
    config = base_config(consumers=[consumer(dsn, "chorus_outbox")])
    async with run_node(config) as running:
        stats = running.node.consumers.get("outbox")
        await wait_until(lambda: stats.errors >= 2, "failed attempts counted", timeout=WAIT)
        assert "Connect" in stats.last_error or "refused" in stats.last_error.lower()
        assert stats.starts == 1  # retried inside, never crashed
        async with running.session.get(f"http://127.0.0.1:{running.port}/ready") as response:
            assert response.status == 200


async def test_a_crashed_consumer_is_restarted_by_its_supervisor_and_goes_on(
        postgres_dsn: str, table: str) -> None:
    config = base_config(consumers=[consumer(postgres_dsn, table)],
                         admin={"allow_crash_actor": True})
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        node = running.node
        assert node.runtime.actor(consumer_id("outbox"))["kind"] == "consumer"
        node.runtime.crash_actor(consumer_id("outbox"))
        stats = node.consumers.get("outbox")
        await wait_until(lambda: stats.starts == 2, "the consumer restarted", timeout=WAIT)
        await insert(postgres_dsn, table, [publish("news", 7)])
        assert (await received(news, 1)) == [{"n": 7}]


async def test_metrics_and_the_admin_api_show_the_consumer(postgres_dsn: str,
                                                            table: str) -> None:
    config = base_config(consumers=[consumer(postgres_dsn, table)],
                         prometheus={"insecure": True},
                         admin={"enabled": True, "insecure": True})
    async with run_node(config) as running, sdk_client(running) as client:
        _, news = await client.subscribe("news")
        await insert(postgres_dsn, table, [publish("news", n) for n in range(3)])
        await received(news, 3)
        stats = running.node.consumers.get("outbox")
        await wait_until(lambda: stats.processed == 3, "the rows deleted", timeout=WAIT)
        after = time.time()
        await wait_until(lambda: stats.lag_at > after, "a lag probe after that", timeout=WAIT)
        base = f"http://127.0.0.1:{running.port}"
        async with running.session.get(f"{base}/metrics") as response:
            text = await response.text()
        assert 'chorus_consumer_processed_total{consumer="outbox",type="postgresql"} 3.0' in text
        assert 'chorus_consumer_lag{consumer="outbox",type="postgresql"} 0.0' in text
        assert 'chorus_consumer_partitions_owned{consumer="outbox",type="postgresql"} 1.0' in text
        async with running.session.get(f"{base}/admin/api/consumers") as response:
            body = await response.json()
        entry, = body["consumers"]
        assert entry["name"] == "outbox" and entry["processed"] == 3 and entry["owned"] == ["0"]


def _readme_blocks() -> tuple[str, dict[str, Any]]:
    """The SQL and the YAML config of the README's outbox section."""
    import re
    from pathlib import Path

    import yaml

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text.split("## Publishing from a database transaction", 1)[1].split("\n## ", 1)[0]
    sql = re.search(r"```sql\n(.*?)```", section, re.S)
    config = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert sql and config, "the README's outbox section lost its SQL or YAML block"
    return sql.group(1), yaml.safe_load(config.group(1))


async def test_the_readme_example_works_as_written(postgres_dsn: str) -> None:
    sql, readme = _readme_blocks()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS chorus_outbox; DROP TABLE IF EXISTS orders;"
                           "CREATE TABLE orders (id INT PRIMARY KEY, status TEXT);"
                           "INSERT INTO orders VALUES (42, 'new')")
        setup, transaction = sql.split("-- in the application's transaction")
        await conn.execute(setup)
        pg_consumer = readme["consumers"][0]  # the Redis one points at a made-up host
        pg_consumer["postgresql"]["dsn"] = postgres_dsn
        namespaces = [{**ns, "allow_subscribe_for_client": True}  # the test's SDK client
                      for ns in readme["channel"]["namespaces"]]
        config = base_config(channel={"namespaces": namespaces}, consumers=[pg_consumer])
        async with run_node(config) as running, sdk_client(running) as client:
            _, order = await client.subscribe("orders:42")
            await conn.execute(transaction)
            assert (await received(order, 1)) == [{"status": "paid"}]
            assert await conn.fetchval("SELECT status FROM orders WHERE id = 42") == "paid"
    finally:
        await conn.execute("DROP TABLE IF EXISTS chorus_outbox; DROP TABLE IF EXISTS orders")
        await conn.close()
