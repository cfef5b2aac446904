"""How fast does ``chorus serve --workers N`` replace a killed worker?

Starts a real Redis (free port) and ``chorus serve --workers 2``, SIGKILLs one worker
several times, and reports per kill: how long until the parent has spawned a
replacement (notice + fork/exec) and until the replacement listens on the port.
``python -m bench.workers_restart [--kills 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.redis_server import redis_server

DEADLINE = 30.0


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def listeners(port: int) -> set[int]:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=False).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def wait(predicate: object, what: str) -> float:
    start = time.perf_counter()
    while not predicate():  # type: ignore[operator]
        if time.perf_counter() - start > DEADLINE:
            raise TimeoutError(what)
        time.sleep(0.0005)
    return time.perf_counter() - start


def measure(kills: int, port: int = 18931) -> list[dict[str, float]]:
    rows = []
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "chorus.json"
        config.write_text(json.dumps({
            "client": {"insecure": True}, "http_api": {"key": "bench"},
            "engine": {"type": "redis", "redis": {"address": [redis.url]}},
            "http_server": {"port": port}, "log": {"level": "warn"}}))
        parent = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--config",
                                   str(config), "--workers", "2"])
        try:
            wait(lambda: len(listeners(port)) == 2, "two workers listening")
            for n in range(kills):
                before = children(parent.pid)
                victim = min(before)
                t0 = time.perf_counter()
                os.kill(victim, signal.SIGKILL)
                spawned = wait(lambda b=before: len(children(parent.pid) - b) == 1,
                               "replacement spawned")
                new = (children(parent.pid) - before).pop()
                wait(lambda new=new: new in listeners(port), "replacement listening")
                ready = time.perf_counter() - t0
                rows.append({"kill": n + 1, "spawned_ms": spawned * 1e3,
                             "listening_ms": ready * 1e3})
                print(f"kill {n + 1}: replacement spawned after {spawned * 1e3:.1f} ms, "
                      f"listening after {ready * 1e3:.0f} ms", file=sys.stderr)
                time.sleep(2.5)  # stay inside the restart intensity (5 in 10 s)
        finally:
            parent.send_signal(signal.SIGTERM)
            parent.wait(30)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    rows = measure(args.kills)
    spawned = sorted(r["spawned_ms"] for r in rows)
    ready = sorted(r["listening_ms"] for r in rows)
    print(f"replacement spawned: median {spawned[len(spawned) // 2]:.1f} ms "
          f"(min {spawned[0]:.1f}, max {spawned[-1]:.1f}); listening: median "
          f"{ready[len(ready) // 2]:.0f} ms (min {ready[0]:.0f}, max {ready[-1]:.0f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
