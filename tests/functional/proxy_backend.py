"""A real application backend for proxy tests: an aiohttp app on a free loopback port.

Each path answers with what the test set in ``answers[path]``: a dict (sent as JSON), an
``int`` (that HTTP status, empty body), or an async function of the request body
returning either (it may also sleep or wait on an event: a slow or hanging backend).
Every request is recorded (headers, parsed JSON body) in ``calls[path]``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.functional.conftest import free_port

Answer = dict[str, Any] | int
Handler = Callable[[dict[str, Any]], Awaitable[Answer]]


@dataclass
class Call:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Backend:
    port: int = 0
    answers: dict[str, Answer | Handler] = field(default_factory=dict)
    calls: dict[str, list[Call]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on every request

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = orjson.loads(await request.read())
        self.calls[path].append(Call({k.lower(): v for k, v in request.headers.items()}, body))
        self.arrived.set()
        answer = self.answers.get(path, {})
        if callable(answer):
            answer = await answer(body)
        if isinstance(answer, int):
            return web.Response(status=answer)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


@asynccontextmanager
async def backend() -> AsyncIterator[Backend]:
    """A running backend; every hanging handler is released when the test ends."""
    state = Backend()
    app = web.Application()
    app.router.add_post("/{path:.+}", state.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    state.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", state.port).start()
    try:
        yield state
    finally:
        await runner.cleanup()
