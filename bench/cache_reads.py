"""`python -m bench.cache_reads [--reads N] [--channels N] [--no-redis]`: L1 on vs off.

Starts a Chorus node in this process (memory engine, then a private redis-server from
``tests.redis_server`` — never port 6379), fills ``channels`` channels with history,
then reads history through the server API (``POST /api/history``, limit 10, one request
at a time over one keep-alive HTTP connection) ``reads`` times, picking channels with a
skew (a few hot channels, a long tail) so hits and misses both occur. Reports the
cache hit ratio (from ``cache_stats``) and history-read latency p50/p99 with the L1 on
(the default budget) and off (``cache.memory_budget: 0``).

The node and the client share one event loop and one core: latencies include the
client's own work, so compare the rows with each other, not with other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import ClientSession, web

from broker import Chorus
from broker.config import config_from_mapping

API_KEY = "bench-key"


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    from tests.redis_server import redis_server

    with redis_server() as server:
        yield f"redis://127.0.0.1:{server.port}"


@contextlib.asynccontextmanager
async def _node(engine: dict[str, Any], budget: int,
                ) -> AsyncIterator[tuple[str, Chorus]]:
    mapping = {"http_api": {"key": API_KEY}, "engine": engine,
               "client": {"token": {"hmac_secret_key": "bench-secret-0123456789abcdef0123"}},
               "log": {"level": "error"},
               "cache": {"memory_budget": budget, "prewarm": 0},
               "channel": {"namespaces": [{"name": "bench", "history_size": 100,
                                           "history_ttl": "300s"}]}}
    chorus = Chorus(config_from_mapping(mapping))
    runner = web.AppRunner(chorus.create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api", chorus
    finally:
        await runner.cleanup()


def _pick(rng: random.Random, channels: int) -> int:
    """A skewed choice: about 80 % of reads go to the first 10 % of channels."""
    hot = max(1, channels // 10)
    return rng.randrange(hot) if rng.random() < 0.8 else rng.randrange(channels)


async def measure(engine: dict[str, Any], budget: int, channels: int, reads: int,
                  per_channel: int = 20) -> dict[str, Any]:
    async with _node(engine, budget) as (api, chorus), ClientSession(
            headers={"X-API-Key": API_KEY}) as http:
        async def call(method: str, params: dict[str, Any]) -> Any:
            async with http.post(f"{api}/{method}", json=params) as response:
                reply = await response.json()
                assert "error" not in reply, reply
                return reply["result"]

        prefix = f"bench:{time.time_ns()}-"  # a fresh stream set per run (shared Redis)
        for c in range(channels):
            for i in range(per_channel):
                await call("publish", {"channel": f"{prefix}{c}", "data": {"i": i}})
        # Start from a cold L1 (as a node without prewarm does after its start): drop
        # what write-through filled on publish, so the first read of a channel misses.
        for c in range(channels):
            chorus.node.cache.invalidate(f"{prefix}{c}")
        stats0 = await call("cache_stats", {})
        rng = random.Random(7)
        latencies = []
        for _ in range(reads):
            channel = f"{prefix}{_pick(rng, channels)}"
            started = time.perf_counter()
            await call("history", {"channel": channel, "limit": 10, "reverse": True})
            latencies.append((time.perf_counter() - started) * 1e6)
        stats = await call("cache_stats", {})
    hits = stats["hits"] - stats0["hits"]
    misses = stats["misses"] - stats0["misses"]
    latencies.sort()
    return {"hit_ratio": hits / (hits + misses) if hits + misses else 0.0,
            "hits": hits, "misses": misses,
            "p50_us": round(statistics.median(latencies), 1),
            "p99_us": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
            "reads": reads}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    engines: list[tuple[str, dict[str, Any]]] = [("memory", {"type": "memory"})]
    with contextlib.ExitStack() as stack:
        if not args.no_redis:
            url = stack.enter_context(_redis())
            engines.append(("redis", {"type": "redis", "redis": {"address": [url]}}))
        for name, engine in engines:
            for label, budget in (("L1 on", 4 * 1024 * 1024), ("L1 off", 0)):
                row = await measure(engine, budget, args.channels, args.reads)
                rows.append({"engine": name, "cache": label, **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print("| engine | cache | hit ratio | hits | misses | p50 µs | p99 µs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['cache']} | {r['hit_ratio']:.1%} | {r['hits']} | "
              f"{r['misses']} | {r['p50_us']} | {r['p99_us']} |")


if __name__ == "__main__":
    main()
