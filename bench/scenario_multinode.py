"""The multinode scenario: fan-out cost on the memory engine, the Redis engine, 2 workers.

The fanout measurement (bench.scenario_fanout) run against, by default:

- ``chorus``: one process, memory engine;
- ``chorus-redis``: one process, Redis engine (publications go through Redis pub/sub);
- ``chorus-workers2``: ``chorus serve --workers 2`` on the Redis engine: the kernel
  spreads subscribers over both workers (SO_REUSEPORT), a publication enters one worker
  and reaches the other through Redis. Server CPU is summed over both workers.

Every point runs ``--repeat`` times, servers interleaved (run 1 of every server, then
run 2...), so a noisy neighbour hits them alike; the summary gives the median. Each
Redis-backed measurement gets a fresh private redis-server on a free port (never 6379),
whose CPU is reported beside the server's (``redis_cpu_s``), with deliveries per CPU-second
of server + Redis, and the publish throughput (acknowledged publications per second of
the publisher's window, ``publish_per_s``) next to the memory engine's.

Caveat: the server processes are pinned to ``--server-core`` like every server, so two
workers share one core: the figure compares CPU cost per delivery, not throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from bench.loadgen import LoadGen
from bench.scenario_fanout import FanoutScenario
from bench.scenarios import Context, Figures
from bench.servers import REDIS_URL_ENV, ServerProcess, proc_cpu_seconds, proc_tree
from tests.redis_server import RedisServer, redis_server

REDIS_SERVERS = ("chorus-redis", "chorus-workers2")


@contextmanager
def _private_redis() -> Iterator[RedisServer]:
    """A fresh redis-server whose URL the Redis adapters read from the environment."""
    with redis_server() as server:
        os.environ[REDIS_URL_ENV] = server.url
        try:
            yield server
        finally:
            os.environ.pop(REDIS_URL_ENV, None)


class MultinodeScenario(FanoutScenario):
    """Deliveries per CPU-second: memory vs Redis engine, 1 vs 2 worker processes."""

    name = "multinode"
    help = ("fan-out on the memory engine, the Redis engine and 2 worker processes "
            "(own redis-server), each point repeated")
    default_servers = "chorus,chorus-redis,chorus-workers2"
    ratio_keys = ("deliveries_per_server_cpu_s", "p50_ms", "p99_ms")
    columns = (
        ("run", "run", "{}"),
        ("deliveries", "deliveries", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("server_cpu_s", "srv CPU s", "{:.2f}"),
        ("deliveries_per_server_cpu_s", "deliv/srv-CPU-s", "{:,.0f}"),
        ("redis_cpu_s", "redis CPU s", "{:.2f}"),
        ("deliveries_per_server_redis_cpu_s", "deliv/(srv+redis)-CPU-s", "{:,.0f}"),
        ("publish_per_s", "publish/s", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:.1f}"),
        ("p99_ms", "p99 ms", "{:.1f}"),
    )

    def __init__(self) -> None:
        self._redis: RedisServer | None = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(subscribers=[3000], mode="burst", publications=100)
        parser.add_argument("--repeat", type=int, default=3,
                            help="runs per server and point (the summary gives the median)")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: n, "run": r + 1} for r in range(max(1, args.repeat))
                for n in args.subscribers]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        redis_cm = _private_redis() if server in REDIS_SERVERS else nullcontext(None)
        with redis_cm as redis:
            self._redis = redis
            try:
                out = super().run_point(ctx, server, point, args)
            finally:
                self._redis = None
        for figures in out:
            figures["run"] = point["run"]
        return out

    def _window(self, ctx: Context, server: ServerProcess, loadgen: LoadGen,
                args: argparse.Namespace, seqs: range, subs: int, rate: float | None,
                phase: str) -> Figures:
        """The fanout window, plus Redis' CPU over the same window."""
        redis = self._redis
        before = proc_cpu_seconds(redis.process.pid) if redis is not None else 0.0
        figures = super()._window(ctx, server, loadgen, args, seqs, subs, rate, phase)
        redis_cpu = proc_cpu_seconds(redis.process.pid) - before if redis is not None else 0.0
        total = figures["server_cpu_s"] + redis_cpu
        figures["server_processes"] = len(proc_tree(server.pid))
        figures["redis_cpu_s"] = round(redis_cpu, 3)
        figures["deliveries_per_server_redis_cpu_s"] = (
            round(figures["deliveries"] / total) if total else None)
        return figures

    @staticmethod
    def summary(record: dict[str, Any]) -> str:
        """Markdown: per server and subscriber count, the median of the runs."""
        groups: dict[tuple[str, Any, Any], list[Figures]] = {}
        for p in record["points"]:
            if "figures" in p:
                f = p["figures"]
                groups.setdefault((p["server"], f.get("subscribers"), f.get("mode")), []).append(f)
        lines = ["", "### Median over runs", "",
                 "| server | subscribers | mode | runs | deliv/srv-CPU-s | "
                 "deliv/(srv+redis)-CPU-s | vs chorus | publish/s | vs chorus | lost |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        medians: dict[tuple[Any, Any], tuple[float | None, float | None]] = {}
        for (server, n, mode), runs in groups.items():
            if server == "chorus":
                medians[(n, mode)] = (_median(runs, "deliveries_per_server_cpu_s"),
                                      _median(runs, "publish_per_s"))
        for (server, n, mode), runs in groups.items():
            med = _median(runs, "deliveries_per_server_cpu_s")
            both = _median(runs, "deliveries_per_server_redis_cpu_s")
            rate = _median(runs, "publish_per_s")
            base, base_rate = medians.get((n, mode), (None, None))
            lost = sum(int(f.get("lost", 0)) for f in runs)
            lines.append(f"| {server} | {n:,} | {mode} | {len(runs)} | {_fmt(med)} | "
                         f"{_fmt(both)} | {_ratio(med, base)} | {_fmt(rate)} | "
                         f"{_ratio(rate, base_rate)} | {lost:,} |")
        return "\n".join(lines) + "\n"


def _median(runs: list[Figures], key: str) -> float | None:
    values = [f[key] for f in runs if f.get(key) is not None]
    return statistics.median(values) if values else None


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
