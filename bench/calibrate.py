"""Calibration: the kernel's cost of one small send over loopback TCP, right now.

Every delivery a server makes costs at least one `send()` of a ~100-byte frame; on a VM
that floor moves between hosts and hours (it is most of a Python server's CPU per
delivery). The harness runs this once per run, pinned to the server core, and records it
next to the machine description so two runs' absolute figures can be compared.

Method: `sockets` connected loopback pairs in one process; `rounds` passes of one
`send(frame)` per socket, nobody reading (the receive buffers absorb it); CPU time per
send from os.times(). Prints one JSON object.

Run: `taskset -c 0 python -m bench.calibrate --sockets 2000 --rounds 20`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import time


def send_floor(sockets: int, rounds: int, size: int = 100) -> dict[str, float]:
    """Measure µs of CPU (user, sys) and wall per send. Closes every socket it opens."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    frame = bytes([0x81, size]) + b"x" * size if size < 126 else b"x" * size
    listener = socket.socket()
    opened: list[socket.socket] = [listener]
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        senders = []
        for _ in range(sockets):
            opened.append(socket.create_connection(("127.0.0.1", port)))
            conn, _addr = listener.accept()
            opened.append(conn)
            senders.append(conn)
        t0, w0 = os.times(), time.perf_counter()
        for _ in range(rounds):
            for s in senders:
                s.send(frame)
        t1, w1 = os.times(), time.perf_counter()
    finally:
        for s in opened:
            s.close()
    n = sockets * rounds
    return {
        "send_user_us": round((t1.user - t0.user) / n * 1e6, 2),
        "send_sys_us": round((t1.system - t0.system) / n * 1e6, 2),
        "send_wall_us": round((w1 - w0) / n * 1e6, 2),
        "sockets": sockets,
        "rounds": rounds,
        "frame_bytes": len(frame),
    }


def main() -> None:
    """CLI: print the measurement as JSON."""
    parser = argparse.ArgumentParser(description="loopback send() cost per small frame")
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(send_floor(args.sockets, args.rounds)))


if __name__ == "__main__":
    main()
