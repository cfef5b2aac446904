"""The startup scenario: time from process start to the first ``200`` on the ready path.

For every server, every run: spawn its command (``python -m broker serve --config
<json>`` for ``chorus``, the memory engine; ``python -m bench.hello_server`` for
``baseline-hello``, a bare aiohttp + uvloop app with one route), then poll
``GET <ready_path>`` over a fresh TCP connection every 2 ms until it answers 200. The
figure ``ready_s`` runs from just before ``Popen`` to that answer: interpreter start,
imports, config, the node's start (for Chorus: actor tree, engine) and the listening
socket. Servers alternate run by run, so a noisy neighbour hits both alike; the summary
gives the median of ``--repeat`` runs and the ratio of the medians.

As installed: servers run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed
from their environment) after ``--warmup`` unmeasured starts each, so the figures are
those of a host whose ``__pycache__`` is written and whose page cache holds the files,
as after ``pip install`` and any earlier start, not those of a first-ever import.

Example: ``python -m bench startup --repeat 5``.

Error handling: a server that exits, or does not answer 200 within ``--ready-timeout``
seconds, fails that point (recorded with the tail of its log); the process is killed
whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from bench.scenarios import Context, Figures, Scenario
from bench.servers import free_port, kill, launch, make_adapter, proc_cpu_seconds, proc_tree

POLL_INTERVAL = 0.002  # seconds between two readiness probes


def http_status(port: int, path: str) -> int | None:
    """The status code of ``GET path`` on 127.0.0.1:``port``; None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def time_to_ready(ctx: Context, server: str, timeout: float) -> tuple[float, float]:
    """Seconds from spawning ``server`` to its first 200 on its ready path, and the CPU
    seconds its process tree used by then (less sensitive to other load than wall time).

    Error handling: RuntimeError if it exits, TimeoutError after ``timeout`` s, ValueError
    for a server without a ready path. The process is killed on the way out.
    """
    adapter = make_adapter(server)
    if adapter.ready_path is None:
        raise ValueError(f"{server} has no ready path; startup needs one")
    port = free_port()
    argv = adapter.command(port, ctx.workdir)  # config written before the clock starts
    log_path = ctx.workdir / f"{server}-startup.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    proc = launch(argv, log_path, ctx.server_core, env)
    try:
        while http_status(port, adapter.ready_path) != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"{server} exited with {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-1500:]}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{server} did not answer 200 on {adapter.ready_path} "
                                   f"within {timeout} s")
            time.sleep(POLL_INTERVAL)  # a subprocess' state: nothing to await
        ready = time.perf_counter() - started
        return ready, tree_cpu_seconds(proc.pid)
    finally:
        kill(proc)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (taskset execs in place: one process):
    the scheduler's on-CPU nanoseconds of every thread (``/proc/<pid>/task/*/schedstat``),
    or utime + stime, in clock ticks (10 ms), where the kernel keeps no schedstat. A
    start costs 0.2-0.3 s, so ticks alone would round the ratio by up to 5 %."""
    total = 0.0
    for p in proc_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
            total += _schedstat_seconds(p)
    return total


def _schedstat_seconds(pid: int) -> float:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return sum(int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
                   for t in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        return proc_cpu_seconds(pid)


class StartupScenario(Scenario):
    """Seconds from spawning a server to its first 200, against a bare aiohttp app."""

    name = "startup"
    help = ("time from process start to the first 200 on the ready path: chorus serve "
            "(memory engine, JSON config) against a bare aiohttp + uvloop app")
    default_servers = "baseline-hello,chorus"
    # Calibration (a loopback send() floor) and plots say nothing about start-up.
    defaults = {"no_calibrate": True, "no_plots": True}
    x_key = "run"
    ratio_keys = ("ready_s", "ready_cpu_s")
    columns = (("ready_s", "ready s", "{:.3f}"), ("ready_cpu_s", "CPU s", "{:.3f}"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--repeat", type=int, default=5,
                            help="runs per server (the summary gives the median)")
        parser.add_argument("--ready-timeout", type=float, default=30.0,
                            help="seconds a server may take to answer 200")
        parser.add_argument("--warmup", type=int, default=1,
                            help="unmeasured starts per server before its first run")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: r + 1} for r in range(max(1, args.repeat))]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        ctx.progress.label = f"{server} run {point[self.x_key]}"
        ctx.progress.set("starting")
        if point[self.x_key] == 1:
            for _ in range(args.warmup):
                time_to_ready(ctx, server, args.ready_timeout)
        ready, cpu = time_to_ready(ctx, server, args.ready_timeout)
        return [{"ready_s": round(ready, 4), "ready_cpu_s": round(cpu, 4)}]

    def summary(self, record: dict[str, Any]) -> str:
        """Medians per server (wall and CPU) and their ratios to the baseline's medians."""
        runs: dict[str, list[dict[str, float]]] = {}
        for p in record["points"]:
            if "figures" in p:
                runs.setdefault(p["server"], []).append(p["figures"])
        lines = ["", "Medians, time to the first 200 (CPU seconds of the server by then):", ""]
        base = runs.get("baseline-hello")
        for server, figures in runs.items():
            wall = statistics.median(f["ready_s"] for f in figures)
            cpu = statistics.median(f["ready_cpu_s"] for f in figures)
            line = f"- {server}: {wall:.3f} s ({cpu:.3f} s CPU) over {len(figures)} runs"
            if base and server != "baseline-hello":
                base_wall = statistics.median(f["ready_s"] for f in base)
                base_cpu = statistics.median(f["ready_cpu_s"] for f in base)
                line += f": {wall / base_wall:.2f}x baseline-hello"
                if base_cpu:
                    line += f" ({cpu / base_cpu:.2f}x in CPU)"
            lines.append(line)
        return "\n".join(lines) + "\n"
