"""Scenarios: what is measured, per server, per point of a sweep.

A scenario is a `Scenario` subclass registered in `SCENARIOS`: it adds its own CLI
options, lists its sweep points, and measures one server at one point, returning plain
JSON-able figures. The harness (`bench.cli`) runs every point for every server in the
same run, so the report can give each figure as a ratio to the baselines measured
minutes apart on the same machine.

`running()` owns the lifetime of one server + load generator pair: both are killed on
the way out whatever happens. Every wait inside a scenario has a deadline.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadGen, Target
from bench.progress import Progress
from bench.servers import ServerProcess, free_port, make_adapter

Figures = dict[str, Any]


@dataclass
class Context:
    """Options common to every scenario, and the shared progress line."""

    server_core: int | None
    client_core: int | None
    workers: int  # 0: automatic (one per 8,000 connections, at least 2)
    source_addrs: int
    connect_concurrency: int
    connect_timeout: float
    workdir: Path
    progress: Progress


@dataclass
class Running:
    """A started server with `connected` subscribed clients."""

    server: ServerProcess
    loadgen: LoadGen
    connect: dict[str, Any]
    rss_before_kb: int
    cpu_before_s: float
    cpu_after_connect_s: float


@contextlib.contextmanager
def running(ctx: Context, server_name: str, n: int, channels: int = 1, *,
            jwt: bool = False, presence: bool = False) -> Iterator[Running]:
    """Start `server_name`, connect and subscribe `n` clients; tear all down on exit.

    `jwt`: each client connects with its own HS256 token (Chorus; made before the clock
    starts). `presence`: channels with presence and join/leave (Chorus).

    Error handling: raises RuntimeError if the server does not start or fewer than 99 %
    of the clients connect (the figures would describe a different load).
    """
    adapter = make_adapter(server_name)
    adapter.set_options(jwt_tokens=n if jwt else 0, presence=presence)
    server = ServerProcess(adapter, ctx.workdir, ctx.server_core)
    workers = ctx.workers or max(2, -(-n // 8000))
    loadgen: LoadGen | None = None
    p = ctx.progress
    p.label = f"{server_name} n={n}"
    try:
        p.set("starting server", conns_up=0, conns_target=n, pubs_sent=0, pubs_target=0,
              received=0)
        port = free_port()
        target = Target("127.0.0.1", port, adapter.ws_path, adapter.handshake(channels),
                        adapter.app_ping, ctx.source_addrs,
                        max(1, ctx.connect_concurrency // workers),
                        stream_request=adapter.stream_request(port),
                        ready_marker=adapter.ready_marker, app_pong=adapter.app_pong,
                        stamp_marker=adapter.stamp_marker)
        loadgen = LoadGen(target, workers, ctx.client_core)
        loadgen.spawn()  # the workers boot while the server starts
        server.start(port)
        loadgen.wait_ready()
        time.sleep(0.3)  # let the fresh server settle before the RSS baseline
        rss0, cpu0 = server.rss_kb(), server.cpu_seconds()
        p.set("connecting")
        status = loadgen.connect(n, time.monotonic() + ctx.connect_timeout,
                                 lambda up, failed: p.set(conns_up=up))
        cpu1 = server.cpu_seconds()
        p.set(conns_up=status["up"])
        if not server.alive():
            raise RuntimeError(f"{server_name} died while connecting:\n{server.log_tail()}")
        if status["up"] < 0.99 * n:
            raise RuntimeError(f"{server_name}: only {status['up']}/{n} clients connected; "
                               f"errors: {status['errors'][:3]}")
        yield Running(server, loadgen, status, rss0, cpu0, cpu1)
    finally:
        if loadgen is not None:
            loadgen.stop()
        server.stop()


class Scenario(abc.ABC):
    """Base class: subclasses set `name`, `x_key`, `ratio_keys` and implement `run_point`."""

    name = "abstract"
    help = ""
    x_key = "n"  # the swept figure (x axis of the plots)
    ratio_keys: tuple[str, ...] = ()
    # (figure key, column header, format) for the Markdown table
    columns: tuple[tuple[str, str, str], ...] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027
        """Add this scenario's options (none by default)."""

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        """The sweep: one dict of parameters per point."""
        return [{self.x_key: n} for n in args.subscribers]

    @abc.abstractmethod
    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        """Measure `server` at `point`; one figures dict per sub-point (e.g. per mode)."""


def int_list(text: str) -> list[int]:
    """argparse type: "1000,5000,10000" -> [1000, 5000, 10000]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values
