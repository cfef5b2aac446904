"""Where an idle connection's memory goes: a tracemalloc diff grouped by source line.

`python -m bench.memprofile --connections 2000 --server chorus` starts the server under
test (any adapter of `bench.servers`) with tracemalloc on, takes a snapshot, opens N
connections with the bench load generator (each one subscribed, as in `python -m bench
idle`), takes a second snapshot, and prints the lines that allocated the most, per
connection. `--server baseline-send_str` gives the bare aiohttp floor to compare with.

The server runs as `python -m bench.memprofile --serve <module> <args...>`: this module
installs a SIGUSR1 handler (collect garbage, dump a snapshot to `$MEMPROFILE_OUT`, then
rename it so the harness never reads half a file) and runs `<module>` as `__main__`.

tracemalloc sees Python allocations only (not the kernel's socket buffers, nor malloc's
own overhead), so its total is below the RSS growth the idle scenario reports; it says
*which* objects make a connection cost what it costs.
"""

from __future__ import annotations

import argparse
import gc
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 1


def _serve(argv: list[str]) -> None:
    """Run `argv[0]` as `__main__` with tracemalloc on and the snapshot handler set."""
    tracemalloc.start(FRAMES)
    out = os.environ["MEMPROFILE_OUT"]
    count = 0

    def dump(_signum: int, _frame: Any) -> None:
        nonlocal count
        count += 1
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        path = f"{out}.{count}"
        snapshot.dump(path + ".tmp")
        os.rename(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, dump)
    module, *rest = argv
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _snapshot(proc: subprocess.Popen[bytes], out: str, count: int,
              timeout: float = 120.0) -> tracemalloc.Snapshot:
    proc.send_signal(signal.SIGUSR1)
    path = Path(f"{out}.{count}")
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"no snapshot {path} from the server")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def _ignore(stat: tracemalloc.StatisticDiff) -> bool:
    name = stat.traceback[0].filename
    return "tracemalloc" in name or name == "<frozen importlib._bootstrap_external>"


def profile(server: str, n: int, channels: int, top: int) -> str:
    """Run the profile; return the report text."""
    from bench.loadgen import LoadGen, Target
    from bench.servers import free_port, launch, make_adapter

    adapter = make_adapter(server)
    with tempfile.TemporaryDirectory(prefix="chorus-memprofile-") as tmp:
        port = free_port()
        argv = adapter.command(port, Path(tmp))
        if argv[1] != "-m":
            raise SystemExit(f"{server}: its command is not `python -m module`: {argv}")
        out = str(Path(tmp) / "snap")
        env = {**os.environ, "MEMPROFILE_OUT": out}
        proc = launch([argv[0], "-m", "bench.memprofile", "--serve", *argv[2:]],
                      Path(tmp) / "server.log", None, env=env)
        target = Target("127.0.0.1", port, adapter.ws_path, adapter.handshake(channels),
                        adapter.app_ping, 8, 64)
        loadgen = LoadGen(target, 2, None)
        try:
            loadgen.start()
            _wait_port(port)
            # One warm-up connection first: lazily created per-node state (codecs,
            # shards, channels) is then in the first snapshot, not charged to the N.
            loadgen.connect(1, time.monotonic() + 60)
            time.sleep(0.5)
            before = _snapshot(proc, out, 1)
            status = loadgen.connect(n, time.monotonic() + 300)
            time.sleep(1.0)
            after = _snapshot(proc, out, 2)
        finally:
            loadgen.stop()
            proc.kill()
            proc.wait()
    up = status["up"]
    stats = [s for s in after.compare_to(before, "lineno") if not _ignore(s)]
    total = sum(s.size_diff for s in stats)
    lines = [f"{server}: {up:,} connections up (of {n:,}), {channels} channel(s) each; "
             f"traced Python memory +{total / 1024:,.0f} KB = {total / max(up, 1):,.0f} "
             "B per connection", "",
             "| B/conn | objects/conn | where |", "|---:|---:|---|"]
    for s in stats[:top]:
        frame = s.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        lines.append(f"| {s.size_diff / max(up, 1):,.0f} | {s.count_diff / max(up, 1):.2f} "
                     f"| {where} |")
    return "\n".join(lines) + "\n"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    return filename.removeprefix(root)


def _wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve"]:
        _serve(args_in[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.memprofile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="chorus")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--top", type=int, default=30, help="lines to show")
    args = parser.parse_args(args_in)
    print(profile(args.server, args.connections, args.channels, args.top))


if __name__ == "__main__":
    main()
