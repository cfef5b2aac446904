"""The idle scenario: memory per connection, connect rate and CPU per handshake.

For each server and connection count: start a fresh server, read its RSS and CPU, open
N connections (each subscribed to K channels where the server has channels), then wait
`--settle` seconds and read RSS again. Connect rate counts a connection once its
subscribe handshake completed. Baseline servers have no channels: their connections are
upgrade-only, which is the floor a broker connection is compared with.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.scenarios import Context, Figures, Scenario, int_list, running
from bench.servers import make_adapter


class IdleScenario(Scenario):
    """What an idle subscribed connection costs the server."""

    name = "idle"
    help = "N idle subscribed connections: KB per connection, connect rate, CPU/handshake"
    x_key = "connections"
    ratio_keys = ("kb_per_connection", "connects_per_s", "server_cpu_per_handshake_us")
    columns = (
        ("connections", "up", "{:,}"),
        ("channels", "channels", "{}"),
        ("kb_per_connection", "KB/conn", "{:.1f}"),
        ("connects_per_s", "connects/s", "{:,.0f}"),
        ("server_cpu_per_handshake_us", "srv CPU µs/handshake", "{:,.0f}"),
        ("rss_after_kb", "RSS after KB", "{:,}"),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--connections", type=int_list, default=[10000],
                            help="connection counts to sweep, e.g. 1000,5000,10000")
        parser.add_argument("--channels", type=int, default=1,
                            help="channels each connection subscribes to (Chorus only)")
        parser.add_argument("--jwt", action="store_true",
                            help="Chorus clients connect with their own HS256 token "
                                 "(pre-made by the harness) instead of insecure mode")
        parser.add_argument("--presence", action="store_true",
                            help="Chorus channels with presence and join_leave on")
        parser.add_argument("--settle", type=float, default=1.0,
                            help="seconds to wait before reading RSS after connecting")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: n} for n in args.connections]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        n = point[self.x_key]
        channels = args.channels if make_adapter(server).has_channels else 0
        ctx.progress.label = f"{server} n={n}"
        with running(ctx, server, n, max(1, channels), jwt=args.jwt,
                     presence=args.presence) as run:
            ctx.progress.set("settling")
            time.sleep(args.settle)
            rss1 = run.server.rss_kb()
            up = run.connect["up"]
            seconds = run.connect["seconds"]
            cpu = run.cpu_after_connect_s - run.cpu_before_s
            return [{
                "connections": up,
                "channels": channels,
                "jwt": args.jwt and channels > 0,
                "presence": args.presence and channels > 0,
                "failed": run.connect["failed"],
                "connect_s": round(seconds, 3),
                "connects_per_s": round(up / seconds) if seconds else None,
                "server_connect_cpu_s": round(cpu, 3),
                "server_cpu_per_handshake_us": round(cpu / up * 1e6, 1) if up else None,
                "rss_before_kb": run.rss_before_kb,
                "rss_after_kb": rss1,
                "kb_per_connection": round((rss1 - run.rss_before_kb) / up, 2) if up else None,
            }]
