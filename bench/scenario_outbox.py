"""The outbox scenario: rows per second from the application's INSERT to the subscriber.

For each row count: a private PostgreSQL cluster (tests.postgres_server: initdb/pg_ctl,
an unprivileged user, a free port) and, for the Redis Stream consumer, a private
redis-server; one Chorus node (``python -m broker serve``, memory engine, pinned to
``--server-core``) consuming the table or streams; one subscriber (a raw JSON WebSocket
client in this process) on every partition's channel. ``--writers`` connections insert
the rows in transactions of ``--batch`` rows, spread over ``--partitions`` partitions
(streams). The clock runs from the first INSERT to the last row received.

Figures: rows, seconds, rows per second end to end (the headline), rows per server
CPU-second, insert-to-receive latency percentiles (ms), lost and duplicated rows.
``--consumer postgresql,redis_stream`` measures both (one table row each);
``--engine redis`` puts the node on the Redis engine (each publish, with its
idempotency key, then goes through Redis as it does between nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.scenarios import Context, Figures, Scenario, int_list
from bench.servers import ChorusAdapter, ServerProcess, free_port


class _OutboxChorus(ChorusAdapter):
    """Chorus with one consumer, on the Redis engine when ``redis_url`` is given (a
    JSON document is valid YAML: appended as is)."""

    def __init__(self, consumer: dict[str, Any], redis_url: str | None) -> None:
        self.consumer = consumer
        self.redis_url = redis_url

    def command(self, port: int, workdir: Path) -> list[str]:
        argv = super().command(port, workdir)
        config = Path(argv[argv.index("--config") + 1])
        with config.open("a") as out:
            out.write("consumers: " + json.dumps([self.consumer]) + "\n")
            if self.redis_url:
                out.write("engine: " + json.dumps({"type": "redis", "redis": {
                    "address": [self.redis_url]}}) + "\n")
        return argv


def _unpin(pid_file: Path) -> None:
    """Let the database use every core: it was started from the pinned harness."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        os.sched_setaffinity(pid, range(os.cpu_count() or 1))


class OutboxScenario(Scenario):
    """Rows per second through the PostgreSQL outbox (or Redis streams) to a subscriber."""

    name = "outbox"
    help = ("rows per second end to end: INSERT in the application's transaction -> "
            "consumer -> subscriber (own PostgreSQL cluster)")
    x_key = "rows"
    default_servers = "chorus"
    columns = (
        ("received", "received", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("duplicates", "dup", "{:,}"),
        ("seconds", "seconds", "{:.2f}"),
        ("rows_per_s", "rows/s", "{:,.0f}"),
        ("server_cpu_s", "srv CPU s", "{:.2f}"),
        ("rows_per_server_cpu_s", "rows/srv-CPU-s", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:.1f}"),
        ("p99_ms", "p99 ms", "{:.1f}"),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rows", type=int_list, default=[10000],
                            help="row counts to sweep, e.g. 1000,10000")
        parser.add_argument("--consumer", default="postgresql",
                            help="postgresql, redis_stream or both comma-separated")
        parser.add_argument("--partitions", type=int, default=8)
        parser.add_argument("--writers", type=int, default=4,
                            help="concurrent inserting connections")
        parser.add_argument("--batch", type=int, default=50, help="rows per transaction")
        parser.add_argument("--select-limit", type=int, default=100,
                            help="the consumer's partition_select_limit")
        parser.add_argument("--engine", default="memory", choices=("memory", "redis"),
                            help="the node's engine (redis: its own private redis-server)")
        parser.add_argument("--drain-timeout", type=float, default=30.0,
                            help="give up after this many seconds without a new row")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: n} for n in args.rows]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        """One figures dict per ``--consumer`` kind; ``server`` is always chorus."""
        kinds = [k.strip() for k in args.consumer.split(",") if k.strip()]
        for kind in kinds:
            if kind not in ("postgresql", "redis_stream"):
                raise ValueError(f"--consumer: unknown consumer {kind!r}")
        return [self._one(ctx, kind, point[self.x_key], args) for kind in kinds]

    def _one(self, ctx: Context, kind: str, rows: int, args: argparse.Namespace) -> Figures:
        ctx.progress.label = f"chorus {kind} rows={rows}"
        ctx.progress.set("starting database", pubs_sent=0, pubs_target=rows, received=0)
        with contextlib.ExitStack() as stack:
            redis_url = None
            if kind == "redis_stream" or args.engine == "redis":
                from tests.redis_server import redis_server

                redis_url = stack.enter_context(redis_server()).url
            consumer, writer_target = stack.enter_context(self._source(kind, args, redis_url))
            engine_url = redis_url if args.engine == "redis" else None
            server = ServerProcess(_OutboxChorus(consumer, engine_url), ctx.workdir,
                                   ctx.server_core)
            try:
                server.start(free_port())
                ctx.progress.set("measuring")
                cpu0 = server.cpu_seconds()
                figures = asyncio.run(_measure(ctx, kind, writer_target, server.port, rows, args))
                figures["server_cpu_s"] = round(server.cpu_seconds() - cpu0, 3)
            finally:
                server.stop()
        cpu = figures["server_cpu_s"]
        figures["rows_per_server_cpu_s"] = round(figures["received"] / cpu) if cpu else None
        figures["mode"] = f"{kind}/{args.engine}"
        return figures

    @contextlib.contextmanager
    def _source(self, kind: str, args: argparse.Namespace,
                redis_url: str | None) -> Iterator[tuple[dict[str, Any], str]]:
        """The consumer's config and where writers write (a DSN or a Redis URL)."""
        if kind == "redis_stream":
            assert redis_url is not None
            streams = [f"bench:s{p}" for p in range(args.partitions)]
            yield ({"name": "bench", "enabled": True, "type": "redis_stream",
                    "redis_stream": {"address": [redis_url], "streams": streams,
                                     "consumer_group": "chorus"}}, redis_url)
            return
        import asyncpg

        from broker.consumers.postgres import outbox_ddl
        from tests.postgres_server import postgres_server

        with postgres_server() as pg:
            _unpin(pg.datadir / "postmaster.pid")

            async def create() -> None:
                conn = await asyncpg.connect(pg.dsn)
                await conn.execute(outbox_ddl("bench_outbox", "bench_outbox"))
                await conn.close()

            asyncio.run(create())
            yield ({"name": "bench", "enabled": True, "type": "postgresql", "postgresql": {
                "dsn": pg.dsn, "outbox_table_name": "bench_outbox",
                "num_partitions": args.partitions, "partition_select_limit": args.select_limit,
                "partition_notification_channel": "bench_outbox"}}, pg.dsn)


async def _measure(ctx: Context, kind: str, target: str, port: int, rows: int,
                   args: argparse.Namespace) -> Figures:
    """Subscribe, insert ``rows``, wait for them; the window's figures."""
    import aiohttp

    seen: dict[int, float] = {}
    latencies: list[float] = []
    duplicates = 0
    subscribed = asyncio.Event()

    async def subscriber(session: aiohttp.ClientSession) -> None:
        nonlocal duplicates
        async with session.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket") as ws:
            commands = [{"id": 1, "connect": {}}] + [
                {"id": p + 2, "subscribe": {"channel": f"p{p}"}} for p in range(args.partitions)]
            await ws.send_str("\n".join(json.dumps(c) for c in commands))
            replies = 0
            async for message in ws:
                now = time.time()
                for line in message.data.splitlines():
                    reply = json.loads(line)
                    if not reply:
                        await ws.send_str("{}")  # pong
                    elif "id" in reply:
                        replies += 1
                        if replies == args.partitions + 1:
                            subscribed.set()
                    elif "pub" in reply.get("push", {}):
                        data = reply["push"]["pub"]["data"]
                        if data["i"] in seen:
                            duplicates += 1
                        seen[data["i"]] = now
                        latencies.append(now - data["t"])
                ctx.progress.set(received=len(seen))

    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(subscriber(session))
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            started = time.time()
            write = _write_rows if kind == "postgresql" else _write_entries
            inserted = await write(ctx, target, rows, args)
            last, idle_since = len(seen), time.monotonic()
            while len(seen) < rows and time.monotonic() - idle_since < args.drain_timeout:
                await asyncio.sleep(0.02)
                if len(seen) != last:
                    last, idle_since = len(seen), time.monotonic()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    ended = max(seen.values(), default=started)
    seconds = max(1e-9, ended - started)
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) \
            if ordered else None

    return {"rows": rows, "inserted": inserted, "received": len(seen),
            "lost": rows - len(seen), "duplicates": duplicates, "seconds": round(seconds, 3),
            "rows_per_s": round(len(seen) / seconds), "p50_ms": pct(0.5), "p90_ms": pct(0.9),
            "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def _row(i: int, partitions: int) -> tuple[str, int]:
    p = i % partitions
    return json.dumps({"channel": f"p{p}", "data": {"i": i, "t": time.time()}}), p


async def _write_rows(ctx: Context, dsn: str, rows: int, args: argparse.Namespace) -> int:
    """Insert ``rows`` rows from ``--writers`` connections, ``--batch`` per transaction."""
    import asyncpg

    counter = iter(range(rows))
    done = 0

    async def writer() -> None:
        nonlocal done
        conn = await asyncpg.connect(dsn)
        try:
            while batch := [i for _, i in zip(range(args.batch), counter, strict=False)]:
                async with conn.transaction():
                    await conn.executemany(
                        "INSERT INTO bench_outbox (method, payload, partition) "
                        "VALUES ('publish', $1, $2)", [_row(i, args.partitions) for i in batch])
                done += len(batch)
                ctx.progress.set(pubs_sent=done)
        finally:
            await conn.close()

    await asyncio.gather(*(writer() for _ in range(args.writers)))
    return done


async def _write_entries(ctx: Context, url: str, rows: int, args: argparse.Namespace) -> int:
    """XADD ``rows`` entries from ``--writers`` connections, ``--batch`` per MULTI/EXEC."""
    import redis.asyncio as aioredis

    counter = iter(range(rows))
    done = 0
    client = aioredis.Redis.from_url(url)

    async def writer() -> None:
        nonlocal done
        while batch := [i for _, i in zip(range(args.batch), counter, strict=False)]:
            async with client.pipeline(transaction=True) as pipe:
                for i in batch:
                    payload, p = _row(i, args.partitions)
                    pipe.xadd(f"bench:s{p}", {"method": "publish", "payload": payload})
                await pipe.execute()
            done += len(batch)
            ctx.progress.set(pubs_sent=done)

    try:
        await asyncio.gather(*(writer() for _ in range(args.writers)))
    finally:
        await client.aclose()
    return done
