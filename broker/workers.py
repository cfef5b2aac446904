"""``chorus serve --workers N``: N broker processes on one port, kept alive by a parent.

Every worker is a full node (its own loop, actor tree and engine link) listening with
``SO_REUSEPORT``, so the kernel spreads new connections over them; they share channels
through the Redis engine, which is therefore required (the memory engine is per process).

The parent is plain process management, not a thespian ``multiprocTCPBase`` system:
it learns of a worker's death from ``waitpid`` the moment it happens (measured in
``bench/workers_restart.py``), needs no admin process that could orphan the workers,
and is started before any event loop or thread exists. Thespian's multiproc base
forks, noticed a SIGKILL only after 1.7 to 5 ms and carries 2K msgs/s (docs/ARCHITECTURE.md), for
nothing a worker needs from it: workers talk through Redis, not through the parent.

Failure policy: a worker that exits for any reason but a shutdown is restarted, with
the same restart intensity rule as the actor supervisors (``actors.RestartIntensity``):
more than ``max_restarts`` within ``period`` seconds and the parent stops every worker
and exits with status 1, so systemd or Kubernetes can take over. SIGTERM/SIGINT are
passed to every worker, which drains (clients told 3001 "shutdown") before exiting.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from actors import RestartIntensity

log = logging.getLogger("chorus.workers")


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    started_at: float


class WorkerPool:
    """Starts ``count`` copies of ``command`` and restarts them by the intensity rule."""

    def __init__(self, command: Sequence[str], count: int, *, max_restarts: int = 5,
                 period: float = 10.0, stop_timeout: float = 15.0) -> None:
        self.command = list(command)
        self.count = count
        self.intensity = RestartIntensity(max_restarts, period)
        self.stop_timeout = stop_timeout
        self.workers: dict[int, Worker] = {}
        self.restarts = 0
        self._stopping = False

    def start(self) -> None:
        for index in range(self.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        process = subprocess.Popen([*self.command, "--worker-index", str(index)])
        self.workers[process.pid] = Worker(index, process, time.monotonic())
        log.info("worker %d started (pid %d)", index, process.pid)

    def run(self) -> int:
        """Wait for workers to exit and restart them; returns the parent's exit status."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            worker = self.workers.pop(pid, None)
            if worker is None or self._stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("worker %d (pid %d) exited with %s after %.1fs", worker.index, pid,
                        _describe(code), time.monotonic() - worker.started_at)
            if not self.intensity.record(time.monotonic()):
                log.error("workers failed %d times within %.0fs: giving up",
                          self.intensity.recent, self.intensity.period)
                self.stop()
                return 1
            self.restarts += 1
            self._spawn(worker.index)
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self.stop(signum)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal every worker, wait up to ``stop_timeout``, then kill what is left."""
        self._stopping = True
        for worker in list(self.workers.values()):
            if worker.process.poll() is None:
                worker.process.send_signal(signum)
        deadline = time.monotonic() + self.stop_timeout
        for worker in list(self.workers.values()):
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time: killed", worker.index)
                worker.process.kill()
                worker.process.wait()


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: this ``chorus serve`` without ``--workers``."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            args.append(arg)
    return [sys.executable, "-m", "broker", *args]
