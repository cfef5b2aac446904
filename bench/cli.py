"""`python -m bench <scenario> [options]`: run a scenario against every server, report.

Every point of the sweep is measured for every server in turn (point-major, so the
servers compared at one point are measured minutes apart), then the run is written as
`<out>/<timestamp>-<scenario>.json`, a Markdown summary (printed and saved as `.md`) and
PNG plots next to it. Exit status: 0 when every point succeeded, 1 otherwise.

Resource handling: servers and load-generator processes are killed when a point ends,
on SIGTERM/Ctrl-C and at exit; results gathered before an interruption are still saved.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.plots import write_plots
from bench.progress import Progress
from bench.report import add_ratios, machine_info, markdown, run_calibration, write_json
from bench.scenario_connect import ConnectScenario
from bench.scenario_fanout import FanoutScenario
from bench.scenario_idle import IdleScenario
from bench.scenario_multinode import MultinodeScenario
from bench.scenario_outbox import OutboxScenario
from bench.scenario_startup import StartupScenario
from bench.scenario_storm import StormScenario
from bench.scenarios import Context, Scenario
from bench.servers import ADAPTERS, PROTOCOLS

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (FanoutScenario(), IdleScenario(), MultinodeScenario(),
                        ConnectScenario(), OutboxScenario(), StartupScenario(),
                        StormScenario())}
DEFAULT_SERVERS = "baseline-send_str,baseline-prebuilt,chorus"
RESULTS = Path(__file__).resolve().parent / "results"


def _core(text: str) -> int | None:
    value = int(text)
    return None if value < 0 else value


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one sub-command per scenario, common options on each."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Chorus fan-out bench: every figure is also given as a ratio to "
                    "baseline servers measured in the same run.",
        epilog="Examples:\n  python -m bench fanout --subscribers 1000,5000,10000\n"
               "  python -m bench fanout --mode burst --servers baseline-send_str,chorus\n"
               "  python -m bench fanout --transport sse,http_stream,uni_sse\n"
               "  python -m bench fanout --servers chorus --protocol centrifugo,pusher\n"
               "  python -m bench idle --connections 10000 --channels 4\n"
               "  python -m bench multinode --subscribers 3000 --repeat 3\n"
               "  python -m bench connect --connections 2000 --auth jwt,proxy\n"
               "  python -m bench outbox --rows 10000 --consumer postgresql,redis_stream\n"
               "  python -m bench startup --repeat 5\n"
               "  python -m bench storm --connections 10000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="scenario")
    for scenario in SCENARIOS.values():
        p = sub.add_parser(scenario.name, help=scenario.help, description=scenario.help,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        scenario.add_arguments(p)
        _common(p, getattr(scenario, "default_servers", DEFAULT_SERVERS))
        p.set_defaults(**getattr(scenario, "defaults", {}))  # e.g. startup: no calibration
    return parser


def _common(p: argparse.ArgumentParser, servers: str = DEFAULT_SERVERS) -> None:
    p.add_argument("--servers", default=servers,
                   help=f"comma-separated, from: {', '.join(ADAPTERS)}")
    p.add_argument("--server-core", type=_core, default=0,
                   help="pin the server to this core with taskset (-1: no pinning)")
    p.add_argument("--client-core", type=_core, default=1,
                   help="pin load generator and publisher to this core (-1: no pinning)")
    p.add_argument("--workers", type=int, default=0,
                   help="load generator processes (0: one per 8,000 connections, min 2)")
    p.add_argument("--source-addrs", type=int, default=8,
                   help="spread connections over 127.0.0.1..127.0.0.N")
    p.add_argument("--connect-concurrency", type=int, default=128,
                   help="connection attempts in flight, all workers together")
    p.add_argument("--connect-timeout", type=float, default=120.0,
                   help="seconds allowed for connecting all clients of one point")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip measuring the loopback send() floor at start")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _prepare_process(client_core: int | None) -> None:
    """Pin the harness (it runs the publisher) and allow many file descriptors."""
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # SIGTERM unwinds like Ctrl-C so every finally block kills its subprocesses.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Run the scenario; returns the record and the output stem (without extension)."""
    scenario = SCENARIOS[args.scenario]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for transport in getattr(args, "transport", []):  # fanout --transport: next to "chorus"
        if "chorus" not in servers:
            servers.append("chorus")
        if f"chorus-{transport}" not in servers:
            servers.append(f"chorus-{transport}")
    for protocol in getattr(args, "protocol", []):  # fanout --protocol centrifugo,pusher
        name = PROTOCOLS[protocol]
        if name not in servers:
            servers.append(name)
    for s in servers:
        if s not in ADAPTERS:
            raise SystemExit(f"--servers: unknown server {s!r}; known: {', '.join(ADAPTERS)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{stamp}-{scenario.name}"
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record: dict[str, Any] = {
        "scenario": scenario.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, "-m", "bench", *sys.argv[1:]],
        "machine": machine_info(), "options": options, "points": [],
    }
    progress = Progress(enabled=not args.quiet)
    if not args.no_calibrate:
        progress.set("calibrating")
        record["calibration"] = run_calibration(args.server_core)
    with tempfile.TemporaryDirectory(prefix="chorus-bench-") as tmp:
        ctx = Context(args.server_core, args.client_core, args.workers, args.source_addrs,
                      args.connect_concurrency, args.connect_timeout, Path(tmp), progress)
        try:
            for point in scenario.points(args):
                for server in servers:
                    _run_one(scenario, ctx, server, point, args, record)
        finally:
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            record["elapsed_s"] = round(time.monotonic() - progress.started, 1)
            add_ratios(record["points"], scenario.ratio_keys)
            write_json(stem.with_suffix(".json"), record)
    return record, stem


def _run_one(scenario: Scenario, ctx: Context, server: str, point: dict[str, Any],
             args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Measure one server at one point; a failure is recorded, not raised."""
    try:
        for figures in scenario.run_point(ctx, server, point, args):
            record["points"].append({"server": server, "point": point, "figures": figures})
    except (RuntimeError, OSError, TimeoutError, ValueError, KeyError) as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        ctx.progress.note(f"FAILED {server} {point}: {detail.splitlines()[0]}")
        record["points"].append({"server": server, "point": point, "error": detail})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench`."""
    args = build_parser().parse_args(argv)
    _prepare_process(args.client_core)
    record, stem = run(args)
    scenario = SCENARIOS[args.scenario]
    text = markdown(record, scenario.x_key, scenario.columns, scenario.ratio_keys)
    summary = getattr(scenario, "summary", None)
    if summary is not None:  # e.g. multinode: medians over repeated runs
        text += summary(record)
    stem.with_suffix(".md").write_text(text)
    print(file=sys.stderr)
    print(text)
    if not args.no_plots:
        for path in write_plots(record, scenario.x_key, stem):
            print(f"plot: {path}")
    print(f"results: {stem.with_suffix('.json')}")
    return 0 if all("figures" in p for p in record["points"]) else 1
