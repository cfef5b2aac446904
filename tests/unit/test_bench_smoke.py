"""Smoke test of the bench harness end to end: tiny N, baselines only, a few seconds.

Runs `python -m bench` as a user would (subprocesses, real sockets) and checks the shape
of what it writes: the JSON record, the Markdown summary and the plots.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--servers", "baseline-send_str,baseline-prebuilt", "--server-core", "-1",
          "--client-core", "-1", "--workers", "2", "--no-calibrate", "--quiet"]


def _run_bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], list[Path]]:
    proc = subprocess.run([sys.executable, "-m", "bench", *args, *COMMON, "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    assert result.with_suffix(".md").read_text() in proc.stdout
    return json.loads(result.read_text()), sorted(tmp_path.glob("*.png"))


def test_fanout_counts_every_delivery_and_reports_ratios(tmp_path: Path) -> None:
    record, plots = _run_bench(tmp_path, "fanout", "--subscribers", "30",
                               "--publications", "10", "--warmup", "2", "--rate", "100")
    assert record["scenario"] == "fanout"
    assert {"cpu_model", "cores", "kernel", "python", "packages"} <= record["machine"].keys()
    assert record["command"][1:4] == ["-m", "bench", "fanout"]
    points = record["points"]
    assert len(points) == 2 * 2  # servers x modes
    for p in points:
        f = p["figures"]
        assert f["deliveries"] == f["expected"] == p["point"]["subscribers"] * 10
        assert f["lost"] == f["duplicates"] == f["publish_errors"] == 0
        assert f["mode"] in ("paced", "burst")
        assert 0 < f["p50_ms"] <= f["p99_ms"] <= f["max_ms"]
        assert f["server_cpu_s"] >= 0 and f["client_cpu_s"] > 0
        other = ({"baseline-send_str", "baseline-prebuilt"} - {p["server"]}).pop()
        assert set(p["ratios"]) == {other}
        assert "deliveries_per_server_cpu_s" in p["ratios"][other]
    names = [x.name.rsplit("-", 1)[1] for x in plots]
    # A run this small can use less server CPU than the clock's tick: its throughput is
    # then undefined (None); the plot is drawn when any point has one.
    measured = any(isinstance(p["figures"].get("deliveries_per_server_cpu_s"), int | float)
                   for p in points)
    assert names == (["latency.png", "throughput.png"] if measured else ["latency.png"])


def test_idle_reports_memory_and_connect_rate(tmp_path: Path) -> None:
    record, plots = _run_bench(tmp_path, "idle", "--connections", "50", "--settle", "0.1")
    assert [p["server"] for p in record["points"]] == ["baseline-send_str",
                                                       "baseline-prebuilt"]
    for p in record["points"]:
        f = p["figures"]
        assert f["connections"] == 50 and f["failed"] == 0
        assert f["connects_per_s"] > 0 and f["rss_after_kb"] > 0
        assert isinstance(f["kb_per_connection"], float)
    assert len(plots) == 2


def test_idle_connects_chorus_with_jwt_tokens_into_presence_channels(tmp_path: Path) -> None:
    """`idle --jwt --presence`: every client connects with its own HS256 token (the node
    is not insecure, so a missing or bad token would fail the connect) and subscribes to
    a channel with presence and join/leave on."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "idle", "--servers", "chorus", "--connections", "30",
         "--jwt", "--presence", "--settle", "0.1", "--server-core", "-1", "--client-core",
         "-1", "--workers", "1", "--no-calibrate", "--no-plots", "--quiet", "--out",
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    [point] = json.loads(result.read_text())["points"]
    figures = point["figures"]
    assert figures["connections"] == 30 and figures["failed"] == 0
    assert figures["jwt"] is True and figures["presence"] is True
    assert figures["server_cpu_per_handshake_us"] is not None


def test_idle_measures_chorus_on_both_websocket_readers(tmp_path: Path) -> None:
    """`chorus` is the default config (sockets detached from aiohttp after the upgrade);
    `chorus-aiohttp` keeps aiohttp's reader (`websocket.detach: false`). Both connect."""
    from bench.servers import make_adapter

    assert "detach" not in make_adapter("chorus").config(1)["websocket"]
    assert make_adapter("chorus-aiohttp").config(1)["websocket"]["detach"] is False
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "idle", "--servers", "chorus,chorus-aiohttp",
         "--connections", "30", "--settle", "0.1", "--server-core", "-1", "--client-core",
         "-1", "--workers", "1", "--no-calibrate", "--no-plots", "--quiet", "--out",
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    points = json.loads(result.read_text())["points"]
    assert [p["server"] for p in points] == ["chorus", "chorus-aiohttp"]
    for p in points:
        assert p["figures"]["connections"] == 30 and p["figures"]["failed"] == 0


def test_storm_reconnects_every_dropped_client(tmp_path: Path) -> None:
    record, _plots = _run_bench(tmp_path, "storm", "--connections", "60", "--settle", "0.2",
                                "--no-plots")
    assert [p["server"] for p in record["points"]] == ["baseline-send_str",
                                                       "baseline-prebuilt"]
    for p in record["points"]:
        f = p["figures"]
        assert f["reconnected"] == 60 and f["failed"] == 0 and f["server_closed"] == 0
        assert f["reconnects_per_s"] > 0


def test_fanout_drives_chorus_end_to_end(tmp_path: Path) -> None:
    """The harness's Chorus adapter (protocol handshake, API publish) cannot rot."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--servers", "chorus", "--subscribers", "20",
         "--publications", "5", "--warmup", "1", "--rate", "50", "--server-core", "-1",
         "--client-core", "-1", "--workers", "1", "--no-calibrate", "--no-plots", "--quiet",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    for point in json.loads(result.read_text())["points"]:
        figures = point["figures"]
        assert point["server"] == "chorus"
        assert figures["deliveries"] == figures["expected"] == 20 * 5
        assert figures["lost"] == figures["duplicates"] == 0


def test_fanout_measures_chorus_transports_next_to_websocket(tmp_path: Path) -> None:
    """`--transport`: Chorus over SSE, HTTP streaming and uni SSE, read by the stream
    client, every delivery counted, and the closing note compares them to WebSocket."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--servers", "chorus", "--transport",
         "sse,http_stream,uni_sse", "--subscribers", "20", "--publications", "5",
         "--warmup", "1", "--rate", "50", "--mode", "paced", "--server-core", "-1",
         "--client-core", "-1", "--workers", "1", "--no-calibrate", "--no-plots", "--quiet",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    points = json.loads(result.read_text())["points"]
    assert sorted(p["server"] for p in points) == [
        "chorus", "chorus-http_stream", "chorus-sse", "chorus-uni_sse"]
    for point in points:
        figures = point["figures"]
        assert figures["deliveries"] == figures["expected"] == 20 * 5, point["server"]
        assert figures["lost"] == figures["duplicates"] == 0
    assert "Transports: deliveries per server CPU-second next to WebSocket" in proc.stdout
    assert "| uni_sse | 20 | paced |" in proc.stdout


def test_fanout_protocol_pusher_counts_every_delivery_next_to_centrifugo(tmp_path: Path) -> None:
    """`--protocol centrifugo,pusher`: the Pusher load client (connection_established,
    pusher:subscribe, data-string deliveries) and the signed Pusher HTTP API publisher
    count every delivery, and the closing note compares the two protocols."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--servers", "chorus", "--protocol",
         "centrifugo,pusher", "--subscribers", "20", "--publications", "5", "--warmup", "1",
         "--mode", "burst", "--server-core", "-1", "--client-core", "-1", "--workers", "1",
         "--no-calibrate", "--no-plots", "--quiet", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    points = json.loads(result.read_text())["points"]
    assert [p["server"] for p in points] == ["chorus", "chorus-pusher"]
    for point in points:
        figures = point["figures"]
        assert figures["deliveries"] == figures["expected"] == 20 * 5
        assert figures["lost"] == figures["duplicates"] == figures["publish_errors"] == 0
        assert 0 < figures["p50_ms"] <= figures["max_ms"]
    assert "| pusher | 20 | burst |" in proc.stdout


def test_startup_times_chorus_and_the_bare_app_to_their_first_ready(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "startup", "--repeat", "2",
                           "--server-core", "-1", "--client-core", "-1", "--quiet",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    record = json.loads(result.read_text())
    assert [(p["server"], p["point"]["run"]) for p in record["points"]] == [
        ("baseline-hello", 1), ("chorus", 1), ("baseline-hello", 2), ("chorus", 2)]
    for p in record["points"]:
        assert 0 < p["figures"]["ready_s"] < 30 and p["figures"]["ready_cpu_s"] > 0
    chorus = [p for p in record["points"] if p["server"] == "chorus"]
    assert all("ready_s" in p["ratios"]["baseline-hello"] for p in chorus)
    assert "chorus: " in proc.stdout and "x baseline-hello" in proc.stdout


def test_fanout_drives_the_peers_next_to_chorus(tmp_path: Path) -> None:
    """The peer adapters (python-socketio's Engine.IO/Socket.IO handshake, room join and
    `42[...]` events; `websockets`' broadcast() behind its aiohttp trigger) deliver every
    publication to the same load client, and Chorus's rows carry "x <peer>" ratios."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", "--servers",
         "chorus,python-socketio,websockets", "--subscribers", "20", "--publications", "5",
         "--warmup", "1", "--rate", "50", "--server-core", "-1", "--client-core", "-1",
         "--workers", "1", "--no-calibrate", "--no-plots", "--quiet", "--out",
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    record = json.loads(result.read_text())
    points = record["points"]
    assert sorted({p["server"] for p in points}) == ["chorus", "python-socketio",
                                                     "websockets"]
    assert len(points) == 3 * 2  # servers x modes
    for point in points:
        figures = point["figures"]
        assert figures["deliveries"] == figures["expected"] == 20 * 5, point["server"]
        assert figures["lost"] == figures["duplicates"] == figures["publish_errors"] == 0
        assert figures["disconnects"] == 0, point["server"]
        if point["server"] == "chorus":
            assert set(point["ratios"]) == {"python-socketio", "websockets"}
    assert record["machine"]["packages"]["python-socketio"]
    assert "| x python-socketio | x websockets |" in proc.stdout


def test_multinode_compares_redis_with_memory_cost_and_publish_throughput(
        tmp_path: Path) -> None:
    """`multinode`: the memory and the Redis engine (its own redis-server) measured alike,
    every delivery counted; the median table gives CPU per delivery and publish
    throughput, each next to the memory engine."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "multinode", "--servers", "chorus,chorus-redis",
         "--subscribers", "20", "--publications", "10", "--warmup", "1", "--repeat", "1",
         "--server-core", "-1", "--client-core", "-1", "--workers", "1",
         "--no-calibrate", "--no-plots", "--quiet", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    points = json.loads(result.read_text())["points"]
    assert [p["server"] for p in points] == ["chorus", "chorus-redis"]
    for point in points:
        figures = point["figures"]
        assert figures["deliveries"] == figures["expected"] == 20 * 10
        assert figures["lost"] == figures["duplicates"] == figures["publish_errors"] == 0
        assert figures["publish_per_s"] > 0
    assert "| publish/s | vs chorus |" in proc.stdout
    assert "| chorus-redis | 20 | burst | 1 |" in proc.stdout
