"""The load generator: several client processes, each with its own uvloop.

`LoadGen` (in the harness process) spawns `workers` processes and drives them over a
`multiprocessing` pipe with small request/reply commands:

    connect(n, offset) -> starts opening n connections in the background
    status()           -> connections up / failed / still connecting
    reset(base, count) -> new measured window; gc frozen and disabled; CPU baseline
    stats()            -> counts, latency histogram, CPU seconds since reset
    drop()             -> abort every connection at once (no close frames)
    stop()             -> close everything and exit

Each worker pins itself to the client core, raises RLIMIT_NOFILE to the hard limit, and
binds its connections to source addresses 127.0.0.1..127.0.0.<source_addrs> in turn so
ten thousands of connections never exhaust one address's ephemeral ports.

Resource handling: worker processes are daemonic, registered for an atexit kill, and
terminated by `LoadGen.stop()` (idempotent). A worker exits by itself when the pipe to the
harness closes.

Error handling: every command waits at most its timeout; a worker that does not answer in
time raises `TimeoutError` naming it. Connection failures are counted and the first few
reasons kept, never raised.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from bench.latency import DeliveryLedger, LatencyHistogram
from bench.servers import HandshakeStep
from bench.streamclient import StreamClient, open_stream
from bench.wsclient import BenchClient, Counters, open_client

_LIVE: set[Any] = set()


@dataclass(frozen=True)
class Target:
    """What every worker connects to and how it subscribes."""

    host: str
    port: int
    path: str
    steps: list[HandshakeStep]
    app_ping: bytes | None
    source_addrs: int = 8
    concurrency: int = 64  # connects in flight per worker
    timeout: float = 30.0  # per connection: connect + upgrade + handshake
    # An HTTP-stream target (SSE, HTTP streaming): the whole request, and what in the
    # response body means subscribed; None: WebSocket (path + steps).
    stream_request: bytes | None = None
    ready_marker: bytes = b""
    app_pong: bytes | None = None  # the answer to app_ping (None: app_ping itself)
    stamp_marker: bytes = b'"t":'  # what precedes a delivery's timestamp (wsclient)


@dataclass
class WorkerStats:
    """Merged figures from all workers for one measured window."""

    up: int = 0
    failed: int = 0
    closed: int = 0
    messages: int = 0
    pings: int = 0
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    ledger: DeliveryLedger = field(default_factory=DeliveryLedger)
    errors: list[str] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        """User + system CPU seconds of all workers in the window."""
        return self.cpu_user_s + self.cpu_sys_s


class _Worker:
    """The worker process's state; runs inside its own event loop."""

    def __init__(self, conn: Connection, target: Target) -> None:
        self.conn = conn
        self.target = target
        self.counters = Counters()
        self.clients: list[BenchClient | StreamClient] = []
        self.failed = 0
        self.pending = 0
        self.errors: list[str] = []
        self.cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        self.closed0 = 0
        self.done: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        loop.add_reader(self.conn.fileno(), self._on_command)
        self.conn.send(("ready", os.getpid()))
        await self.done
        for c in self.clients:
            if c.transport is not None:
                c.transport.abort()

    def _on_command(self) -> None:
        try:
            name, *args = self.conn.recv()
        except (EOFError, OSError):
            name, args = "stop", []
        reply = getattr(self, f"cmd_{name}")(*args)
        with contextlib.suppress(OSError):  # the harness is gone; "stop" ends the worker
            self.conn.send(reply)
        if name == "stop" and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def cmd_connect(self, n: int, offset: int) -> str:
        task = asyncio.get_running_loop().create_task(self._connect_many(n, offset))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "ok"

    async def _connect_many(self, n: int, offset: int) -> None:
        loop = asyncio.get_running_loop()
        t = self.target
        sem = asyncio.Semaphore(t.concurrency)
        self.pending += n

        async def one(i: int) -> None:
            source = f"127.0.0.{1 + (offset + i) % t.source_addrs}"
            steps = t.steps
            if steps and steps[0].variants:  # e.g. this client's own connection token
                variants = steps[0].variants
                first = replace(steps[0], payload=variants[(offset + i) % len(variants)])
                steps = [first, *steps[1:]]
            async with sem:
                try:
                    client: BenchClient | StreamClient
                    if t.stream_request is not None:
                        client = await open_stream(loop, t.host, t.port, t.stream_request,
                                                   t.ready_marker, source, self.counters,
                                                   t.timeout)
                    else:
                        client = await open_client(loop, t.host, t.port, t.path, source,
                                                   steps, t.app_ping, self.counters,
                                                   t.timeout, app_pong=t.app_pong,
                                                   stamp_marker=t.stamp_marker)
                    self.clients.append(client)
                except (OSError, TimeoutError) as exc:
                    self.failed += 1
                    if len(self.errors) < 5:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    self.pending -= 1

        await asyncio.gather(*(one(i) for i in range(n)))

    def cmd_status(self) -> dict[str, Any]:
        return {"up": len(self.clients), "failed": self.failed, "pending": self.pending,
                "closed": self.counters.closed, "received": self.counters.ledger.received,
                "errors": list(self.errors)}

    def cmd_reset(self, base: int, count: int) -> str:
        gc.enable()
        gc.collect()
        gc.freeze()
        gc.disable()  # no collector pauses inside the measured window
        self.counters.reset(base, count)
        self.closed0 = self.counters.closed
        self.cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        return "ok"

    def cmd_stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # µs resolution, unlike os.times
        c = self.counters
        return {"up": len(self.clients), "failed": self.failed,
                "closed": c.closed - self.closed0, "messages": c.messages, "pings": c.pings,
                "cpu_user_s": usage.ru_utime - self.cpu0.ru_utime,
                "cpu_sys_s": usage.ru_stime - self.cpu0.ru_stime, "hist": c.hist.to_state(),
                "ledger": (c.ledger.base, c.ledger.count, c.ledger.counts,
                           c.ledger.received, c.ledger.stray),
                "errors": list(self.errors)}

    def cmd_drop(self) -> str:
        """Abort every connection at once, as a network blip would (no close frames)."""
        for c in self.clients:
            if c.transport is not None:
                c.transport.abort()
        self.clients = []
        self.failed = 0
        self.errors = []
        return "ok"

    def cmd_stop(self) -> str:
        gc.enable()
        return "bye"


def _worker_main(conn: Connection, target: Target, core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_Worker(conn, target).serve())


def _kill_all() -> None:
    for proc in list(_LIVE):
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        _LIVE.discard(proc)


atexit.register(_kill_all)


class LoadGen:
    """Controller for the worker processes (used from the harness process)."""

    def __init__(self, target: Target, workers: int, core: int | None) -> None:
        self.target = target
        self.core = core
        self.n_workers = max(1, workers)
        self.procs: list[Any] = []
        self.pipes: list[Connection] = []

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the workers and wait until each says it is ready."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the worker processes without waiting for them (see `wait_ready`)."""
        ctx = mp.get_context("spawn")  # no inherited event loop or threads
        for _ in range(self.n_workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, self.target, self.core),
                               daemon=True)
            proc.start()
            child.close()
            _LIVE.add(proc)
            self.procs.append(proc)
            self.pipes.append(parent)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every spawned worker has said it is ready."""
        deadline = time.monotonic() + timeout
        for i, pipe in enumerate(self.pipes):
            self._recv(i, pipe, deadline)

    def _recv(self, i: int, pipe: Connection, deadline: float) -> Any:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"load generator worker {i} did not answer in time")
        return pipe.recv()

    def call(self, name: str, *args: Any, timeout: float = 30.0) -> list[Any]:
        """Send one command to every worker; return their replies in worker order."""
        for pipe in self.pipes:
            pipe.send((name, *args))
        deadline = time.monotonic() + timeout
        return [self._recv(i, p, deadline) for i, p in enumerate(self.pipes)]

    def connect(self, n: int, deadline: float,
                on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Open `n` connections spread over the workers; wait until all are settled.

        Returns {"up", "failed", "seconds", "errors"}. Stops waiting at `deadline`
        (monotonic), reporting whatever is up by then.
        """
        t0 = time.monotonic()
        share, extra = divmod(n, self.n_workers)
        offset = 0
        for i, pipe in enumerate(self.pipes):
            k = share + (1 if i < extra else 0)
            pipe.send(("connect", k, offset))
            offset += k
        for i, pipe in enumerate(self.pipes):
            self._recv(i, pipe, time.monotonic() + 10)
        status = self.status()
        while time.monotonic() < deadline:
            if on_progress is not None:
                on_progress(status["up"], status["failed"])
            if status["pending"] == 0:
                break
            time.sleep(0.05)
            status = self.status()
        status["seconds"] = time.monotonic() - t0
        return status

    def status(self) -> dict[str, Any]:
        """Summed worker status (up, failed, pending, closed, received, errors)."""
        total: dict[str, Any] = {"up": 0, "failed": 0, "pending": 0, "closed": 0,
                                 "received": 0, "errors": []}
        for s in self.call("status", timeout=10):
            for key in ("up", "failed", "pending", "closed", "received"):
                total[key] += s[key]
            total["errors"].extend(s["errors"])
        return total

    def reset(self, base: int, count: int) -> None:
        """Open a new measured window of seqs [base, base + count) in every worker."""
        self.call("reset", base, count, timeout=30)

    def stats(self) -> WorkerStats:
        """Merged counters of the current window."""
        out = WorkerStats()
        first = True
        for s in self.call("stats", timeout=30):
            out.up += s["up"]
            out.failed += s["failed"]
            out.closed += s["closed"]
            out.messages += s["messages"]
            out.pings += s["pings"]
            out.cpu_user_s += s["cpu_user_s"]
            out.cpu_sys_s += s["cpu_sys_s"]
            out.hist.merge(LatencyHistogram.from_state(s["hist"]))
            base, count, counts, received, stray = s["ledger"]
            ledger = DeliveryLedger(base, count)
            ledger.counts, ledger.received, ledger.stray = counts, received, stray
            if first:
                out.ledger = ledger
                first = False
            else:
                out.ledger.merge(ledger)
            out.errors.extend(s["errors"])
        return out

    def drop(self) -> None:
        """Abort every client connection at once (see `python -m bench storm`)."""
        self.call("drop", timeout=30)

    def stop(self) -> None:
        """Ask the workers to exit, then kill any that linger. Idempotent."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        deadline = time.monotonic() + 5
        for proc in self.procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            _LIVE.discard(proc)
        for pipe in self.pipes:
            pipe.close()
        self.procs, self.pipes = [], []
