"""One HTTP proxy: POST the request's JSON to ``endpoint``, decode the answer.

Guarantees, per proxy:

* **bounded time** — one call takes at most ``timeout`` from its start, queueing
  included; then it fails (error 100 to the client), and only that caller waits.
* **bounded concurrency** — at most ``max_in_flight`` requests at once; up to
  ``max_queued`` more wait for a slot; past that a call fails at once. A hanging backend
  therefore holds at most ``max_in_flight`` sockets and the callers of this proxy only:
  the event loop and every other connection carry on (every call is an actor effect).
* **circuit breaker** — consecutive failures open it (``broker.proxy.breaker``); while
  open, calls fail at once without a request.
* HTTP status transforms (``http.status_to_code_transforms``): a listed non-200 status
  answers the client with the configured error or disconnect, as the backend's answer.

Error handling: everything that is not an answer raises ``ProxyFailure`` with a metrics
reason: timeout, connection (refused, reset, DNS), status (non-200, not transformed),
response (not JSON, wrong shape), breaker_open, overloaded, encoding. A cancelled call
(the client went away) releases its slot and, if it was the breaker's probe, the probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from broker.proxy.breaker import CircuitBreaker
from broker.proxy.codec import Answer, decode_answer, encode_request
from broker.proxy.types import ProxyDisconnect, ProxyError, ProxyFailure, Request

if TYPE_CHECKING:
    from broker.config.proxy import ProxyConfig

log = logging.getLogger("chorus.proxy")

CONTENT_TYPE = {"Content-Type": "application/json"}


class HttpProxy:
    """A proxy endpoint with its limits and breaker; ``session()`` gives the node's one
    aiohttp ClientSession (created on first use, closed by the registry)."""

    def __init__(self, name: str, config: ProxyConfig,
                 session: Callable[[], aiohttp.ClientSession]) -> None:
        self.name = name
        self.config = config
        self.endpoint = config.endpoint
        self._session = session
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_open_time)
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self.in_flight = 0
        self.queued = 0
        self._transforms = {t.status_code: t for t in config.http.status_to_code_transforms}

    async def call(self, kind: str, request: Request) -> Answer:
        """Ask the backend about ``request`` (a ``kind`` event); see module docstring."""
        body = encode_request(request, self.config.binary_encoding)
        allowed, probe = self.breaker.allow()
        if not allowed:
            raise ProxyFailure(f"proxy {self.name}: circuit open, backend not asked",
                               "breaker_open")
        if self._slots.locked() and self.queued >= self.config.max_queued:
            self.breaker.abandon(probe)
            raise ProxyFailure(f"proxy {self.name}: {self.in_flight} calls in flight and "
                               f"{self.queued} queued (max_in_flight/max_queued)", "overloaded")
        verdict: bool | None = None
        try:
            async with asyncio.timeout(self.config.timeout):
                self.queued += 1
                try:
                    await self._slots.acquire()
                finally:
                    self.queued -= 1
                verdict = False  # from here on, not answering in time is the backend's
                try:
                    self.in_flight += 1
                    answer = await self._post(kind, body, request.headers)
                finally:
                    self.in_flight -= 1
                    self._slots.release()
            verdict = True
            return answer
        except TimeoutError:
            where = "waiting for a slot" if verdict is None else "waiting for the backend"
            raise ProxyFailure(f"proxy {self.name}: no answer within "
                               f"{self.config.timeout:g}s ({where})", "timeout") from None
        except aiohttp.ClientError as error:
            raise ProxyFailure(f"proxy {self.name}: {error!r}", "connection") from None
        finally:
            if verdict is None:
                self.breaker.abandon(probe)
            elif verdict:
                self.breaker.success(probe)
            else:
                self.breaker.failure(probe)

    async def _post(self, kind: str, body: bytes, headers: Any) -> Answer:
        async with self._session().post(self.endpoint, data=body,
                                        headers={**headers, **CONTENT_TYPE}) as response:
            if response.status != 200:
                return self._transformed(response.status)
            raw = await response.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProxyFailure(f"proxy {self.name}: answer is not JSON", "response") from None
        return decode_answer(kind, parsed)

    def _transformed(self, status: int) -> ProxyError | ProxyDisconnect:
        transform = self._transforms.get(status)
        if transform is None:
            raise ProxyFailure(f"proxy {self.name}: unexpected HTTP status {status}", "status")
        if transform.to_error.code > 0:
            error = transform.to_error
            return ProxyError(error.code, error.message, error.temporary)
        return ProxyDisconnect(transform.to_disconnect.code, transform.to_disconnect.reason)

    def snapshot(self) -> dict[str, Any]:
        """Breaker, in-flight and queue figures for the admin API."""
        breaker = self.breaker
        return {"name": self.name, "endpoint": self.endpoint, "timeout": self.config.timeout,
                "breaker": breaker.state, "breaker_opens": breaker.opens,
                "retry_in": round(breaker.seconds_until_probe(), 3),
                "in_flight": self.in_flight, "queued": self.queued,
                "max_in_flight": self.config.max_in_flight}
