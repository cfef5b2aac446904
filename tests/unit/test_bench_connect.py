"""Smoke test of ``python -m bench connect``: both auth modes against a real Chorus node
and a real connect-proxy backend, tiny N, a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_connect_bench_measures_jwt_and_proxy_connects(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "connect", "--connections", "40", "--concurrency", "4",
         "--server-core", "-1", "--client-core", "-1", "--no-calibrate", "--quiet",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    [result] = tmp_path.glob("*.json")
    record = json.loads(result.read_text())
    figures = {p["figures"]["mode"]: p["figures"] for p in record["points"]}
    assert set(figures) == {"jwt", "proxy"}
    assert figures["jwt"]["backend_calls"] == 0 and figures["proxy"]["backend_calls"] == 40
    for f in figures.values():
        assert f["connects"] == 40 and f["failures"] == 0
        assert f["connects_per_s"] > 0 and 0 < f["p50_ms"] <= f["p99_ms"]
    assert "through the proxy" in proc.stdout and "the JWT rate" in proc.stdout
