"""The storm scenario: every client drops at once and reconnects at once.

For each server and connection count: connect and subscribe N clients (as `idle`), then
abort every client socket at once (a network blip or a load balancer restart: no close
frames), wait a second for the server to see them go, and reconnect all N at once (the
load generator's `--connect-concurrency` in flight, from `--source-addrs` addresses).
Counted: reconnects that failed (refused, timed out, closed before subscribing) and
connections the *server* closed in the `--settle` seconds after (the load generator
closes none itself, so every one of them is the server's doing). The target: 0 and 0.

Chorus's per-IP connect limit (`client.connect_rate_limit_per_ip`) is off by default; on,
at its 20/s default, a storm from few addresses is refused with 3013 (a reconnect code:
SDKs back off and come back), which is what it is for.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.scenarios import Context, Figures, Scenario, int_list, running
from bench.servers import make_adapter


class StormScenario(Scenario):
    """A reconnect storm: N clients dropped and reconnecting at once."""

    name = "storm"
    help = "N subscribed clients dropped at once reconnect at once: failures, server closes"
    x_key = "connections"
    ratio_keys = ("reconnects_per_s", "server_cpu_per_reconnect_us")
    columns = (
        ("connections", "clients", "{:,}"),
        ("reconnected", "reconnected", "{:,}"),
        ("failed", "failed", "{:,}"),
        ("server_closed", "closed by server", "{:,}"),
        ("reconnect_s", "seconds", "{:.2f}"),
        ("reconnects_per_s", "reconnects/s", "{:,.0f}"),
        ("server_cpu_per_reconnect_us", "srv CPU µs/reconnect", "{:,.0f}"),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--connections", type=int_list, default=[10000],
                            help="clients per point, e.g. 2000,10000")
        parser.add_argument("--jwt", action="store_true",
                            help="Chorus clients connect with their own HS256 token "
                                 "(pre-made by the harness) instead of insecure mode")
        parser.add_argument("--presence", action="store_true",
                            help="Chorus channels with presence and join_leave on")
        parser.add_argument("--settle", type=float, default=3.0,
                            help="seconds to watch for server closes after the reconnect")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: n} for n in args.connections]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        n = point[self.x_key]
        channels = 1 if make_adapter(server).has_channels else 0
        with running(ctx, server, n, 1, jwt=args.jwt, presence=args.presence) as run:
            ctx.progress.set("dropping")
            run.loadgen.drop()
            time.sleep(1.0)  # the server sees every socket go
            run.loadgen.reset(0, 0)  # closes counted from here on are the server's
            ctx.progress.set("reconnecting")
            cpu0 = run.server.cpu_seconds()
            status = run.loadgen.connect(n, time.monotonic() + ctx.connect_timeout,
                                         lambda up, failed: ctx.progress.set(conns_up=up))
            cpu = run.server.cpu_seconds() - cpu0
            seconds = status["seconds"]
            time.sleep(args.settle)
            stats = run.loadgen.stats()
            up = stats.up
            return [{
                "connections": n, "channels": channels,
                "jwt": args.jwt and channels > 0, "presence": args.presence and channels > 0,
                "reconnected": up,
                "failed": stats.failed, "server_closed": stats.closed,
                "reconnect_s": round(seconds, 3),
                "reconnects_per_s": round(up / seconds) if seconds else None,
                "server_cpu_per_reconnect_us": round(cpu / up * 1e6, 1) if up else None,
                "errors": stats.errors[:5],
            }]
