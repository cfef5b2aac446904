"""The fanout scenario: N subscribers on one channel, M publications, per mode.

For each server and subscriber count: connect N subscribers, then for each mode (paced
and/or burst) publish `--warmup` publications that are not measured, open a measured
window, publish M, and wait until every delivery arrived or none arrived for
`--drain-timeout` seconds. The server's CPU time is read from /proc before the first
measured publication and after the last delivery, so idle time around the window does
not dilute it.

With `--transport sse,http_stream,uni_sse` Chorus is also measured over those transports
(servers `chorus-<transport>`, subscribers read by `bench/streamclient.py`), and the
closing note puts each next to Chorus over WebSocket at the same point and mode.

With `--protocol centrifugo,pusher` Chorus is measured with Pusher clients too (server
`chorus-pusher`: the load client speaks Pusher protocol 7 at `/app/{key}`, the publisher
triggers through the signed Pusher HTTP API) and the closing note puts its deliveries per
server CPU-second next to the Centrifugo-protocol figure of the same run.

Figures: deliveries, lost/duplicated deliveries, server CPU seconds, deliveries per
server CPU-second (the headline), wall-clock delivery rate, latency percentiles
(publish-to-receive, ms), client and publisher CPU, and `client_saturated` when the
client core was busy > 90 % of the window (then latency includes client queueing).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.loadgen import LoadGen
from bench.publisher import Publisher
from bench.scenarios import Context, Figures, Scenario, int_list, running
from bench.servers import ServerProcess


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "-"


def transport_list(text: str) -> list[str]:
    """argparse type: "sse,http_stream" -> ["sse", "http_stream"], each one known."""
    from bench.servers import TRANSPORTS

    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in TRANSPORTS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"expected transports from {', '.join(TRANSPORTS)}: {text!r}")
    return values


def protocol_list(text: str) -> list[str]:
    """argparse type: "centrifugo,pusher" -> ["centrifugo", "pusher"], each one known."""
    from bench.servers import PROTOCOLS

    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in PROTOCOLS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"expected protocols from {', '.join(PROTOCOLS)}: {text!r}")
    return values


class FanoutScenario(Scenario):
    """Deliveries per server CPU-second and latency while fanning out to N subscribers."""

    name = "fanout"
    help = "N subscribers on one channel, M publications (burst and/or paced)"
    x_key = "subscribers"
    ratio_keys = ("deliveries_per_server_cpu_s", "p50_ms", "p99_ms")
    columns: tuple[tuple[str, str, str], ...] = (
        ("deliveries", "deliveries", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("server_cpu_s", "srv CPU s", "{:.2f}"),
        ("deliveries_per_server_cpu_s", "deliv/srv-CPU-s", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:.1f}"),
        ("p90_ms", "p90 ms", "{:.1f}"),
        ("p99_ms", "p99 ms", "{:.1f}"),
        ("max_ms", "max ms", "{:.1f}"),
        ("client_cpu_s", "client CPU s", "{:.2f}"),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--subscribers", type=int_list, default=[10000],
                            help="subscriber counts to sweep, e.g. 1000,5000,10000")
        parser.add_argument("--mode", default="paced,burst",
                            help="burst, paced or both comma-separated")
        parser.add_argument("--publications", type=int, default=100,
                            help="measured publications per mode")
        parser.add_argument("--warmup", type=int, default=10,
                            help="unmeasured publications before each mode")
        parser.add_argument("--rate", type=float, default=5.0,
                            help="paced mode: publications per second")
        parser.add_argument("--publish-concurrency", type=int, default=8,
                            help="HTTP requests in flight")
        parser.add_argument("--payload-size", type=int, default=100,
                            help="bytes of frame payload per delivery")
        parser.add_argument("--drain-timeout", type=float, default=15.0,
                            help="give up waiting for deliveries after this many seconds "
                                 "without progress")
        parser.add_argument("--transport", type=transport_list, default=[],
                            help="also measure Chorus over these transports (sse, "
                                 "http_stream, uni_sse; comma-separated) next to its "
                                 "WebSocket, in the same run")
        parser.add_argument("--protocol", type=protocol_list, default=[],
                            help="measure Chorus with clients of these protocols "
                                 "(centrifugo, pusher; comma-separated) in the same run; "
                                 "the closing note compares pusher with centrifugo")

    def summary(self, record: dict[str, Any]) -> str:
        """The closing notes: each transport's (and Pusher clients') deliveries per server
        CPU-second next to Chorus over WebSocket with the Centrifugo protocol at the same
        point and mode (empty without --transport or --protocol)."""
        return self._compared(record, "Transports", "transport", ("chorus-pusher",)) + \
            self._compared(record, "Protocols", "protocol", (), only="chorus-pusher")

    def _compared(self, record: dict[str, Any], title: str, what: str,
                  skip: tuple[str, ...], only: str | None = None) -> str:
        done = [p for p in record["points"] if "figures" in p]
        rows = []
        for p in done:
            if only is not None and p["server"] != only:
                continue
            if not p["server"].startswith("chorus-") or p["server"].startswith(
                    ("chorus-redis", "chorus-workers", *skip)):
                continue
            ws = next((b for b in done if b["server"] == "chorus"
                       and b["point"] == p["point"]
                       and b["figures"].get("mode") == p["figures"].get("mode")), None)
            if ws is None:
                continue
            key = "deliveries_per_server_cpu_s"
            mine, theirs = p["figures"].get(key), ws["figures"].get(key)
            ratio = f"{mine / theirs:.2f}" if mine and theirs else "-"
            rows.append(f"| {p['server'].removeprefix('chorus-')} | "
                        f"{p['point'][self.x_key]:,} | {p['figures'].get('mode')} | "
                        f"{_count(theirs)} | {_count(mine)} | {ratio} |")
        if not rows:
            return ""
        if what == "protocol":
            head = ["", "Protocols: deliveries per server CPU-second with Pusher clients next "
                        "to Centrifugo-protocol clients (same run):", "",
                    "| protocol | subscribers | mode | centrifugo | protocol | x centrifugo |"]
        else:
            head = ["", f"{title}: deliveries per server CPU-second next to WebSocket "
                        "(same run):", "",
                    f"| {what} | subscribers | mode | WebSocket | {what} | x WebSocket |"]
        return "\n".join([*head, "|---|---|---|---|---|---|", *rows]) + "\n"

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        modes = [m.strip() for m in args.mode.split(",") if m.strip()]
        for m in modes:
            if m not in ("burst", "paced"):
                raise ValueError(f"--mode: unknown mode {m!r} (burst, paced)")
        n = point[self.x_key]
        out: list[Figures] = []
        with running(ctx, server, n) as run:
            subs = run.connect["up"]
            seq = 0
            for mode in modes:
                rate = args.rate if mode == "paced" else None
                ctx.progress.label = f"{server} n={n} {mode}"
                self._window(ctx, run.server, run.loadgen, args, range(seq, seq + args.warmup),
                             subs, rate, "warm-up")
                seq += args.warmup
                figures = self._window(ctx, run.server, run.loadgen, args,
                                       range(seq, seq + args.publications), subs, rate,
                                       "measuring")
                seq += args.publications
                figures.update(mode=mode, subscribers=subs, rate=rate,
                               connect_s=round(run.connect["seconds"], 3))
                out.append(figures)
        return out

    def _window(self, ctx: Context, server: ServerProcess, loadgen: LoadGen,
                args: argparse.Namespace, seqs: range, subs: int, rate: float | None,
                phase: str) -> Figures:
        """Publish `seqs`, wait for their deliveries, return the window's figures."""
        p = ctx.progress
        p.set(phase, pubs_sent=0, pubs_target=len(seqs), received=0)
        loadgen.reset(seqs.start, len(seqs))
        expected = subs * len(seqs)
        adapter = server.adapter
        publisher = Publisher(adapter, server.port, args.payload_size,
                              args.publish_concurrency,
                              on_sent=lambda k: p.set(pubs_sent=k))
        (user0, sys0), t0 = server.cpu_times(), time.monotonic()
        pub = publisher.run(seqs, rate)
        received, t_last = self._drain(ctx, loadgen, expected, args.drain_timeout)
        user1, sys1 = server.cpu_times()
        cpu = (user1 - user0) + (sys1 - sys0)
        wall = max(1e-9, t_last - t0)
        stats = loadgen.stats()
        loss = stats.ledger.loss(subs)
        client_cpu = stats.cpu_s
        figures: Figures = {
            "publications": len(seqs), "published": pub.sent, "publish_errors": pub.errors,
            "publish_error_samples": pub.error_samples, "expected": expected,
            "deliveries": stats.ledger.received, "lost": loss.lost,
            "duplicates": loss.duplicates, "seqs_with_loss": loss.seqs_with_loss,
            "stray": stats.ledger.stray, "disconnects": stats.closed,
            "server_cpu_s": round(cpu, 3), "server_user_s": round(user1 - user0, 3),
            "server_sys_s": round(sys1 - sys0, 3),
            "deliveries_per_server_cpu_s": round(stats.ledger.received / cpu) if cpu else None,
            "wall_s": round(wall, 3), "deliveries_per_s": round(stats.ledger.received / wall),
            "publish_s": round(pub.seconds, 3),
            # Publish throughput: acknowledged publications per second of the publisher's
            # window (with a burst, as fast as the node answers `--publish-concurrency`).
            "publish_per_s": round(pub.sent / pub.seconds, 1) if pub.seconds else None,
            "publisher_max_lag_ms": round(pub.max_lag_ms, 1),
            "client_cpu_s": round(client_cpu, 3), "client_user_s": round(stats.cpu_user_s, 3),
            "client_sys_s": round(stats.cpu_sys_s, 3), "publisher_cpu_s": round(pub.cpu_s, 3),
            "client_saturated": (client_cpu + pub.cpu_s) / wall > 0.9,
            "server_rss_kb": server.rss_kb(),
            **stats.hist.summary_ms(),
        }
        if received < expected:
            p.note(f"{adapter.name}: {phase}: {received}/{expected} deliveries arrived")
        return figures

    def _drain(self, ctx: Context, loadgen: LoadGen, expected: int,
               idle_timeout: float) -> tuple[int, float]:
        """Wait until `expected` deliveries or `idle_timeout` s without progress.

        Returns (received, monotonic time the last progress was seen).
        """
        received, t_last = -1, time.monotonic()
        while True:
            now_received = loadgen.status()["received"]
            now = time.monotonic()
            if now_received != received:
                received, t_last = now_received, now
                ctx.progress.set(received=received)
            if received >= expected or now - t_last > idle_timeout:
                return received, t_last
            time.sleep(0.02)
