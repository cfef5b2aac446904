"""Async consumers survive a SIGKILLed node: every committed message reaches the
subscribers exactly once, in order per partition, and nothing rolled back appears.

Two real ``chorus serve`` processes on the Redis engine (shared idempotency keys and
pub/sub) consume the same outbox table (or the same streams). Application writers add
messages from concurrent transactions, some rolled back, while node A is SIGKILLed and
later restarted; the subscribers (raw JSON WebSocket clients) sit on node B.

PostgreSQL: each transaction first bumps its partition's counter row (``UPDATE ...
RETURNING``), which serializes the writers of one partition as an application locking
the entity behind the partition does, so committed rows of a partition carry the gapless
sequence 1..N in commit order; rolled-back rows carry tokens that must never arrive.
Redis: one writer per stream, its entries added inside ``MULTI``/``EXEC`` or thrown away
with ``MULTI``/``DISCARD``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from broker.auth import make_token
from broker.consumers.postgres import outbox_ddl
from tests.functional.conftest import SECRET, base_config
from tests.reliability.helpers import ServedNode, serve
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PARTITIONS = 8
ROWS = 10_000
_runs = itertools.count(1)


class Subscriber:
    """A raw JSON-protocol WebSocket client subscribed to every partition's channel."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = defaultdict(list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.got.values())

    async def run(self, session: aiohttp.ClientSession, port: int, ready: asyncio.Event) -> None:
        async with session.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket") as ws:
            await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET,
                                                                                  "sub")}}))
            frames = [json.dumps({"id": i + 2, "subscribe": {"channel": f"p{i}"}})
                      for i in range(PARTITIONS)]
            await ws.send_str("\n".join(frames))
            answered: set[int] = set()
            async for message in ws:
                for line in message.data.splitlines():
                    reply = json.loads(line)
                    if not reply:  # a server ping
                        await ws.send_str("{}")
                    elif "id" in reply:
                        assert "error" not in reply, reply
                        answered.add(reply["id"])
                        if len(answered) == PARTITIONS + 1:
                            ready.set()
                    elif "pub" in reply.get("push", {}):
                        push = reply["push"]
                        self.got[push["channel"]].append(push["pub"]["data"])


@asynccontextmanager
async def subscribers(port: int, count: int = 2) -> AsyncIterator[list[Subscriber]]:
    subs = [Subscriber() for _ in range(count)]
    async with aiohttp.ClientSession() as session:
        readies = [asyncio.Event() for _ in subs]
        tasks = [asyncio.create_task(s.run(session, port, r)) for s, r in zip(subs, readies,
                                                                            strict=True)]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
            yield subs
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def cluster(config: dict[str, Any], tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start nodes on demand (``start(name)``); every process is ended on exit."""
    started: list[ServedNode] = []
    dirs = itertools.count(1)

    async def start(name: str) -> ServedNode:
        where = tmp / f"{name}-{next(dirs)}"
        where.mkdir()
        node = await serve({**config, "chorus": {"node_name": name}}, str(where),
                           log_level="info")
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            if node.process.returncode is None:
                node.process.kill()
                await node.process.wait()


async def kill_and_restart(start: Callable[..., Awaitable[ServedNode]], victim: ServedNode,
                           subs: list[Subscriber], after: int) -> None:
    """SIGKILL ``victim`` once the subscribers have ``after`` messages; start it again
    1.5 s later."""
    await wait_until(lambda: subs[0].count >= after, f"{after} messages delivered",
                     timeout=40)
    victim.process.kill()
    await victim.process.wait()
    await asyncio.sleep(1.5)
    await start("a")


def check(subs: list[Subscriber], expected: dict[int, list[int]], thrown: set[str]) -> None:
    """Exactly the committed messages, once each, in order per partition."""
    for sub in subs:
        for p in range(PARTITIONS):
            got = sub.got[f"p{p}"]
            assert not [d for d in got if d["token"] in thrown], "a rolled-back message arrived"
            seqs = [d["seq"] for d in got]
            assert seqs == expected[p], (f"partition {p}: {len(seqs)} received, "
                                         f"{len(expected[p])} committed; first difference at "
                                         f"{_first_difference(seqs, expected[p])}")


def _first_difference(a: list[int], b: list[int]) -> int:
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))


async def node_metric(node_port: int, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{node_port}/metrics") as response:
        text = await response.text()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + "{")]
    return sum(values)


def node_config(redis_url: str, consumer: dict[str, Any]) -> dict[str, Any]:
    return base_config(engine={"type": "redis", "redis": {"address": [redis_url],
                                                          "prefix": f"kill{next(_runs)}"}},
                       prometheus={"insecure": True}, consumers=[consumer])


# -- PostgreSQL ------------------------------------------------------------------------------
async def pg_writer(dsn: str, table: str, rng: random.Random, expected: dict[int, list[int]],
                    thrown: set[str], writer: int, budget: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for txn in itertools.count():
            if budget[0] <= 0:
                return
            p, k = rng.randrange(PARTITIONS), rng.randint(1, 20)
            rollback = rng.random() < 0.1
            token = f"w{writer}-t{txn}"
            try:
                async with conn.transaction():  # rolled back when _Rollback escapes it
                    top = await conn.fetchval("UPDATE seqs SET n = n + $2 WHERE "
                                              "partition = $1 RETURNING n", p, k)
                    seqs = list(range(top - k + 1, top + 1))
                    await conn.executemany(
                        f"INSERT INTO {table} (method, payload, partition) "
                        "VALUES ('publish', $1, $2)",
                        [(json.dumps({"channel": f"p{p}", "data": {
                            "seq": s, "token": token}}), p) for s in seqs])
                    if rollback:
                        raise _Rollback
            except _Rollback:
                thrown.add(token)
                continue
            # Committed. The counter row held every other writer of the partition until
            # this commit, so the database's order is the seq order; when this task sees
            # the commit is not (another writer may have committed meanwhile): sort later.
            expected[p].extend(seqs)
            budget[0] -= k
    finally:
        await conn.close()


class _Rollback(Exception):
    pass


async def test_outbox_rows_reach_subscribers_once_in_order_across_a_sigkill(
        postgres_dsn: str, redis_url: str, tmp_path: Path) -> None:
    table = f"outbox_kill_{os.getpid()}_{next(_runs)}"
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(outbox_ddl(table, f"{table}_ch"))
        await conn.execute("CREATE TABLE IF NOT EXISTS seqs (partition INT PRIMARY KEY, "
                           "n INT NOT NULL); TRUNCATE seqs")
        await conn.executemany("INSERT INTO seqs VALUES ($1, 0)", [(p,) for p in
                                                                   range(PARTITIONS)])
    finally:
        await conn.close()
    consumer = {"name": "outbox", "enabled": True, "type": "postgresql", "postgresql": {
        "dsn": postgres_dsn, "outbox_table_name": table, "num_partitions": PARTITIONS,
        "partition_select_limit": 100, "partition_poll_interval": "100ms",
        "partition_notification_channel": f"{table}_ch"}}
    expected: dict[int, list[int]] = defaultdict(list)
    thrown: set[str] = set()
    async with cluster(node_config(redis_url, consumer), tmp_path) as start:
        a, b = await start("a"), await start("b")
        async with subscribers(b.port) as subs:
            budget, rng = [ROWS], random.Random(14)
            writers = [asyncio.create_task(pg_writer(postgres_dsn, table, random.Random(
                rng.random()), expected, thrown, w, budget)) for w in range(12)]
            await kill_and_restart(start, a, subs, after=ROWS // 4)
            await asyncio.gather(*writers)
            total = sum(len(v) for v in expected.values())
            assert total >= ROWS and thrown, "the writers committed and rolled back"
            for p in range(PARTITIONS):  # gapless per partition, in the database's order
                expected[p].sort()
                assert expected[p] == list(range(1, len(expected[p]) + 1))
            await wait_until(lambda: all(s.count >= total for s in subs),
                             f"{total} rows delivered", timeout=40)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            check(subs, expected, thrown)
        conn = await asyncpg.connect(postgres_dsn)
        try:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        finally:
            await conn.close()
        print(f"\n{total} rows, {len(thrown)} rolled-back transactions; redeliveries "
              f"suppressed on B: {await node_metric(b.port, 'chorus_consumer_redeliveries_total')}")


# -- Redis streams ----------------------------------------------------------------------------
async def stream_writer(redis_url: str, stream: str, p: int, rng: random.Random,
                        expected: dict[int, list[int]], thrown: set[str],
                        budget: list[int]) -> None:
    """One writer per stream: entries added in MULTI/EXEC, or queued and DISCARDed."""
    client = aioredis.Redis.from_url(redis_url, single_connection_client=True)
    seq = 0
    try:
        for txn in itertools.count():
            if budget[0] <= 0:
                return
            k, rollback = rng.randint(1, 20), rng.random() < 0.1
            token = f"s{p}-t{txn}"
            seqs = list(range(seq + 1, seq + k + 1))
            await client.execute_command("MULTI")
            for s in seqs:
                payload = json.dumps({"channel": f"p{p}", "data": {"seq": s, "token": token}})
                await client.execute_command("XADD", stream, "*", "method", "publish",
                                             "payload", payload)
            if rollback:
                await client.execute_command("DISCARD")
                thrown.add(token)
                continue
            await client.execute_command("EXEC")
            seq += k
            expected[p].extend(seqs)
            budget[0] -= k
            await asyncio.sleep(0.002 * rng.random())  # the writers interleave
    finally:
        await client.aclose()


async def test_stream_entries_reach_subscribers_once_in_order_across_a_sigkill(
        redis_url: str, tmp_path: Path) -> None:
    run = next(_runs)
    streams = [f"kill{run}:s{p}" for p in range(PARTITIONS)]
    consumer = {"name": "streams", "enabled": True, "type": "redis_stream", "redis_stream": {
        "address": [redis_url], "streams": streams, "consumer_group": "chorus",
        "visibility_timeout": "2s"}}
    expected: dict[int, list[int]] = defaultdict(list)
    thrown: set[str] = set()
    async with cluster(node_config(redis_url, consumer), tmp_path) as start:
        a, b = await start("a"), await start("b")
        async with subscribers(b.port) as subs:
            budget, rng = [ROWS], random.Random(14)
            writers = [asyncio.create_task(stream_writer(redis_url, stream, p, random.Random(
                rng.random()), expected, thrown, budget)) for p, stream in enumerate(streams)]
            await kill_and_restart(start, a, subs, after=ROWS // 4)
            await asyncio.gather(*writers)
            total = sum(len(v) for v in expected.values())
            assert total >= ROWS and thrown, "the writers committed and discarded"
            await wait_until(lambda: all(s.count >= total for s in subs),
                             f"{total} entries delivered", timeout=40)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            check(subs, expected, thrown)
        client = aioredis.Redis.from_url(redis_url)
        try:
            for stream in streams:
                assert (await client.xpending(stream, "chorus"))["pending"] == 0
        finally:
            await client.aclose()
        print(f"\n{total} entries, {len(thrown)} discarded transactions; redeliveries "
              f"suppressed on B: {await node_metric(b.port, 'chorus_consumer_redeliveries_total')}")
