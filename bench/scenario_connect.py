"""The connect scenario: connects per second with a JWT vs through the connect proxy.

For each connection count and each ``--auth`` mode: one Chorus node (``python -m broker
serve``, memory engine, pinned to ``--server-core``); in this process (pinned to
``--client-core``) ``--concurrency`` clients connect one after the other — WebSocket
upgrade, ``connect`` command, its reply, close — until ``--connections`` connects are
done. ``jwt``: each connect carries an HS256 token (made before the clock starts).
``proxy``: no token; the node asks the connect proxy, a real aiohttp application
answering ``{"result": {"user": ...}}`` on this process's loop (so it shares the client
core, as a backend on another machine would not use the server's).

Figures: connects, seconds, connects per second, server CPU-seconds and microseconds of
server CPU per connect (the figure that isolates Chorus's cost: the client side is Python
too), connect latency p50/p99 (upgrade start to connect reply), backend calls (proxy).
The summary gives proxy/jwt for the rate and for server CPU per connect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.scenarios import Context, Figures, Scenario, int_list
from bench.servers import ChorusAdapter, ServerProcess, free_port

SECRET = "bench-secret-0123456789abcdef0123456789"
MODES = ("jwt", "proxy")


class _ConnectChorus(ChorusAdapter):
    """Chorus authenticating by JWT, or by the connect proxy at ``proxy_url``."""

    def __init__(self, proxy_url: str | None) -> None:
        self.proxy_url = proxy_url

    def command(self, port: int, workdir: Path) -> list[str]:
        client: dict[str, Any] = {"token": {"hmac_secret_key": SECRET}}
        if self.proxy_url:
            client["proxy"] = {"connect": {"enabled": True, "endpoint": self.proxy_url,
                                           "timeout": "5s"}}
        config = {"client": client, "http_api": {"key": self.api_key},
                  "http_server": {"port": port}, "prometheus": {"enabled": False},
                  "log": {"level": "warn"}}
        path = workdir / f"chorus-connect-{port}.json"
        path.write_text(json.dumps(config))
        return [sys.executable, "-m", "broker", "serve", "--config", str(path),
                "--port", str(port)]


class ConnectScenario(Scenario):
    """Connects per second: JWT vs the connect proxy."""

    name = "connect"
    help = "connects per second with a JWT vs through the connect proxy (and CPU per connect)"
    x_key = "connections"
    default_servers = "chorus"
    columns = (
        ("connects", "connects", "{:,}"),
        ("seconds", "seconds", "{:.2f}"),
        ("connects_per_s", "connects/s", "{:,.0f}"),
        ("server_cpu_s", "srv CPU s", "{:.2f}"),
        ("server_cpu_us_per_connect", "srv CPU µs/connect", "{:,.0f}"),
        ("p50_ms", "p50 ms", "{:.1f}"),
        ("p99_ms", "p99 ms", "{:.1f}"),
        ("backend_calls", "backend calls", "{:,}"),
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--connections", type=int_list, default=[2000],
                            help="connects per point, e.g. 1000,5000")
        parser.add_argument("--auth", default="jwt,proxy",
                            help="jwt, proxy or both comma-separated")
        parser.add_argument("--concurrency", type=int, default=32,
                            help="clients connecting at once")

    def points(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        return [{self.x_key: n} for n in args.connections]

    def run_point(self, ctx: Context, server: str, point: dict[str, Any],
                  args: argparse.Namespace) -> list[Figures]:
        modes = [m.strip() for m in args.auth.split(",") if m.strip()]
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"--auth: unknown mode {mode!r} (jwt, proxy)")
        return [asyncio.run(self._one(ctx, mode, point[self.x_key], args)) for mode in modes]

    async def _one(self, ctx: Context, mode: str, n: int, args: argparse.Namespace) -> Figures:
        from aiohttp import web

        ctx.progress.label = f"chorus {mode} connects={n}"
        ctx.progress.set("starting", pubs_sent=0, pubs_target=n, received=0)
        calls = 0

        async def connect_proxy(request: web.Request) -> web.Response:
            nonlocal calls
            calls += 1
            body = json.loads(await request.read())
            return web.json_response({"result": {"user": body["client"][:8]}})

        app = web.Application()
        app.router.add_post("/connect", connect_proxy)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        backend_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", backend_port).start()
        proxy_url = f"http://127.0.0.1:{backend_port}/connect" if mode == "proxy" else None
        server = ServerProcess(_ConnectChorus(proxy_url), ctx.workdir, ctx.server_core)
        try:
            await asyncio.to_thread(server.start, free_port())
            ctx.progress.set("measuring")
            figures = await _measure(ctx, server, mode, n, args.concurrency)
        finally:
            server.stop()
            await runner.cleanup()
        figures["backend_calls"] = calls
        figures["mode"] = mode
        return figures

    def summary(self, record: dict[str, Any]) -> str:
        """proxy/jwt per connection count: connect rate and server CPU per connect."""
        by: dict[tuple[Any, str], dict[str, Any]] = {}
        for p in record["points"]:
            if "figures" in p:
                by[(p["point"][self.x_key], p["figures"]["mode"])] = p["figures"]
        lines = []
        for (n, mode), jwt in sorted(by.items()):
            proxy = by.get((n, "proxy"))
            if mode != "jwt" or proxy is None:
                continue
            rate = proxy["connects_per_s"] / jwt["connects_per_s"]
            cpu = proxy["server_cpu_us_per_connect"] / jwt["server_cpu_us_per_connect"]
            lines.append(f"- {n:,} connects: through the proxy {rate:.2f}x the JWT rate; "
                         f"{cpu:.2f}x the server CPU per connect")
        return ("\nProxy overhead (proxy / jwt):\n" + "\n".join(lines) + "\n") if lines else ""


async def _measure(ctx: Context, server: ServerProcess, mode: str, n: int,
                   concurrency: int) -> Figures:
    import aiohttp

    from broker.auth import make_token

    tokens = [make_token(SECRET, f"u{i}") if mode == "jwt" else "" for i in range(n)]
    url = f"ws://127.0.0.1:{server.port}/connection/websocket"
    latencies: list[float] = []
    failures: list[str] = []
    todo = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in todo:
            started = time.perf_counter()
            try:
                async with session.ws_connect(url, protocols=["centrifuge-json"]) as ws:
                    connect = {"token": tokens[i]} if tokens[i] else {}
                    await ws.send_str(json.dumps({"id": 1, "connect": connect}))
                    reply = await asyncio.wait_for(ws.receive(), 10)
                    if '"connect"' not in str(reply.data):
                        failures.append(str(reply.data)[:200])
                        continue
                    latencies.append(time.perf_counter() - started)
            except (aiohttp.ClientError, TimeoutError) as error:
                failures.append(repr(error))
            ctx.progress.set(received=len(latencies))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, started = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu0
    if len(latencies) < 0.99 * n:
        raise RuntimeError(f"{mode}: only {len(latencies)}/{n} connects; e.g. {failures[:3]}")
    latencies.sort()
    done = len(latencies)
    return {"connects": done, "seconds": round(seconds, 3),
            "connects_per_s": round(done / seconds, 1), "server_cpu_s": round(cpu, 3),
            "server_cpu_us_per_connect": round(cpu / done * 1e6, 1),
            "p50_ms": round(latencies[done // 2] * 1000, 2),
            "p99_ms": round(latencies[min(done - 1, int(done * 0.99))] * 1000, 2),
            "failures": len(failures)}
