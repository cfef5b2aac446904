"""The publisher: POSTs timestamped publications over keep-alive HTTP.

Each publication's payload is `{"t":<time.time_ns()>,"s":<seq>,"p":"xxx..."}`, padded so
the *frame payload a subscriber receives* (the adapter's envelope included) is
`payload_size` bytes: every server moves frames of the same size. `t` is taken right
before the request is written, so latency covers the HTTP hop, the server and delivery.

Modes:
- burst: `concurrency` requests in flight, back to back, as fast as the server answers.
- paced: publication i is started at t0 + i / rate (never earlier); `max_lag_ms` reports
  how late the publisher itself was, so a missed rate is visible, not hidden.

Error handling: a failed request (connection error, non-200, or a body with "error") is
counted in `errors` (first reasons kept) and never retried: a retry would double-deliver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import uvloop

from bench.servers import ServerAdapter

_T_DIGITS = len(str(time.time_ns()))


def make_payload(seq: int, payload_size: int, overhead: int, t_ns: int | None = None) -> bytes:
    """The JSON payload for `seq`, padded so envelope + payload is `payload_size` bytes."""
    t = time.time_ns() if t_ns is None else t_ns
    core = 18 + _T_DIGITS + len(str(seq))  # len('{"t":,"s":,"p":""}') == 18, + digits
    pad = max(0, payload_size - overhead - core)
    return b'{"t":%d,"s":%d,"p":"%s"}' % (t, seq, b"x" * pad)


@dataclass
class PublishResult:
    """What the publisher did and what it cost."""

    sent: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    max_lag_ms: float = 0.0
    error_samples: list[str] = field(default_factory=list)


class Publisher:
    """Publishes a range of seqs to one server through its adapter."""

    def __init__(self, adapter: ServerAdapter, port: int, payload_size: int = 100,
                 concurrency: int = 8, timeout: float = 30.0,
                 on_sent: Callable[[int], None] | None = None) -> None:
        self.adapter = adapter
        self.url = adapter.publish_url(port)
        self.headers = adapter.publish_headers()
        self.payload_size = payload_size
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.result = PublishResult()
        self.on_sent = on_sent

    def run(self, seqs: range, rate: float | None) -> PublishResult:
        """Publish every seq (paced at `rate`/s, or burst when None); blocks until done."""
        self.result = PublishResult()
        cpu0, t0 = time.process_time(), time.monotonic()
        uvloop.run(self._run(seqs, rate))
        self.result.seconds = time.monotonic() - t0
        self.result.cpu_s = time.process_time() - cpu0
        return self.result

    async def _run(self, seqs: range, rate: float | None) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if rate is None:
                await self._burst(session, seqs)
            else:
                await self._paced(session, seqs, rate)

    async def _post(self, session: aiohttp.ClientSession, seq: int) -> None:
        payload = make_payload(seq, self.payload_size, self.adapter.frame_overhead)
        body = self.adapter.publish_body(payload)
        r = self.result
        try:
            url = self.adapter.sign_publish(self.url, body)
            async with session.post(url, data=body, headers=self.headers) as resp:
                text = await resp.read()
                if resp.status != 200 or b'"error"' in text:
                    self._error(f"HTTP {resp.status}: {text[:200]!r}")
                    return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._error(f"{type(exc).__name__}: {exc}")
            return
        r.sent += 1
        if self.on_sent is not None:
            self.on_sent(r.sent)

    def _error(self, reason: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < 5:
            self.result.error_samples.append(reason)

    async def _burst(self, session: aiohttp.ClientSession, seqs: range) -> None:
        it = iter(seqs)

        async def lane() -> None:
            for seq in it:  # the shared iterator hands each seq to exactly one lane
                await self._post(session, seq)

        await asyncio.gather(*(lane() for _ in range(self.concurrency)))

    async def _paced(self, session: aiohttp.ClientSession, seqs: range, rate: float) -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        t0 = loop.time()

        async def one(seq: int) -> None:
            try:
                await self._post(session, seq)
            finally:
                sem.release()

        for i, seq in enumerate(seqs):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            lag = loop.time() - (t0 + i / rate)
            self.result.max_lag_ms = max(self.result.max_lag_ms, lag * 1000.0)
            task = loop.create_task(one(seq))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
