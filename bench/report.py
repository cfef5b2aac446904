"""Results: machine description, ratios to the baselines, JSON and Markdown output.

A run's record is one JSON document:

    {"scenario", "started", "finished", "command", "machine", "options",
     "points": [{"server", "point": {x_key: requested}, "figures": {...},
                 "ratios": {"<baseline>": {key: server/baseline}}}
                | {"server", "point", "error"}]}

Ratios compare a point with every *baseline* server's point at the same x and mode
(same run, same machine, minutes apart): that, not the absolute figure, is what can be
compared across runs on a noisy shared machine.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.servers import PEERS

PACKAGES = ("aiohttp", "uvloop", "orjson", "thespian", "matplotlib", "chorus-broker",
            "python-socketio", "python-engineio", "websockets")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, kernel, Python and package versions, load at start."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        loadavg = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        loadavg = []
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": versions,
        "loadavg_at_start": loadavg,
    }


def run_calibration(core: int | None, timeout: float = 60.0) -> dict[str, Any]:
    """Run bench.calibrate pinned to `core`; {"error": ...} instead of raising."""
    argv = [sys.executable, "-m", "bench.calibrate"]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    try:
        out = subprocess.run(argv, capture_output=True, timeout=timeout, check=True,
                             cwd=Path(__file__).resolve().parent.parent)
        result: dict[str, Any] = json.loads(out.stdout)
        return result
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def is_baseline(server: str) -> bool:
    """Reference servers every other figure is divided by: the bare baselines and the
    peers (python-socketio, websockets), so a run with a peer reports "x <peer>"."""
    return server.startswith("baseline") or server in PEERS


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["point"] == b["point"] and a["figures"].get("mode") == b["figures"].get("mode")


def add_ratios(points: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Fill each successful point's "ratios" against every other baseline's same point."""
    done = [p for p in points if "figures" in p]
    for p in done:
        ratios: dict[str, dict[str, float | None]] = {}
        for b in done:
            if b["server"] == p["server"] or not is_baseline(b["server"]) \
                    or not _same_point(p, b):
                continue
            ratios[b["server"]] = {k: _ratio(p["figures"].get(k), b["figures"].get(k))
                                   for k in keys}
        p["ratios"] = ratios


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 3)
    return None


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write the run record (pretty, stable key order)."""
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _calibration_line(cal: dict[str, Any] | None) -> str:
    if not cal:
        return "Calibration: not run."
    if "error" in cal:
        return f"Calibration failed: {cal['error']}"
    return (f"Calibration (server core): one {cal['frame_bytes']}-byte loopback send() costs "
            f"{cal['send_user_us'] + cal['send_sys_us']:.1f} µs CPU "
            f"({cal['send_sys_us']:.1f} µs in the kernel).")


def markdown(record: dict[str, Any], x_key: str, columns: tuple[tuple[str, str, str], ...],
             ratio_keys: tuple[str, ...]) -> str:
    """A Markdown summary: context, one table row per server per point, errors."""
    m = record["machine"]
    baselines = sorted({p["server"] for p in record["points"] if is_baseline(p["server"])})
    lines = [
        f"# {record['scenario']} — {record['started']}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']}, load at start {' '.join(m['loadavg_at_start'])}.  ",
        f"Command: `{' '.join(record['command'])}`  ",
        _calibration_line(record.get("calibration")),
        "",
    ]
    has_mode = any(p.get("figures", {}).get("mode") for p in record["points"])
    head = ["server", x_key, *(["mode"] if has_mode else []), *(h for _, h, _ in columns)]
    # The headline ratio only; the JSON has every ratio.
    head += [f"x {b.removeprefix('baseline-')}" for k in ratio_keys[:1] for b in baselines]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    errors = []
    for p in record["points"]:
        x = p["point"].get(x_key)
        if "error" in p:
            errors.append(f"- {p['server']} at {x_key}={x}: {p['error'].splitlines()[0]}")
            continue
        f = p["figures"]
        row = [p["server"], _fmt(x, "{:,}"), *([f.get("mode") or "-"] if has_mode else [])]
        row += [_fmt(f.get(k), fmt) for k, _, fmt in columns]
        for k in ratio_keys[:1]:
            for b in baselines:
                row.append(_fmt(p.get("ratios", {}).get(b, {}).get(k), "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    warnings = [f"- {p['server']} at {x_key}={p['point'].get(x_key)} "
                f"{p['figures'].get('mode') or ''}: client core saturated; latency includes "
                "client queueing" for p in record["points"]
                if "figures" in p and p["figures"].get("client_saturated")]
    if warnings:
        lines += ["", "Warnings:", *warnings]
    if errors:
        lines += ["", "Failed points:", *errors]
    return "\n".join(lines) + "\n"
