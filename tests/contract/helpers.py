"""Helpers for the engine contract suite."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from broker.types import ClientInfo, Publication, StreamPosition
from tests.waiting import wait_until

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(condition: Condition, *, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Await until ``condition()`` is true, polling; fail the test after ``timeout`` seconds.

    Engines expire state on their own schedule (Redis in the server, memory lazily), so
    TTL tests wait for the observable effect with a deadline instead of a fixed sleep.
    """
    await wait_until(condition, f"condition within {timeout} s", timeout, interval)


class Recorder:
    """Handlers that record what an engine delivers from other nodes."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication, StreamPosition | None]] = []
        self.controls: list[bytes] = []
        self.joins: list[tuple[str, ClientInfo]] = []
        self.leaves: list[tuple[str, ClientInfo]] = []

    def on_publication(self, channel: str, pub: Publication, pos: StreamPosition | None) -> None:
        self.publications.append((channel, pub, pos))

    def on_control(self, data: bytes) -> None:
        self.controls.append(data)

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))

    @property
    def empty(self) -> bool:
        return not (self.publications or self.controls or self.joins or self.leaves)


async def start_linked(engine: Any) -> Callable[[], Awaitable[None]]:
    """Start ``engine`` and run its link as the engine link actor would (its pub/sub
    readers and liveness checks live in ``run_link``); returns the closer, which ends
    the link first and then closes the engine."""
    await engine.start()
    link = asyncio.get_running_loop().create_task(engine.run_link())

    async def close() -> None:
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await link
        await engine.close()

    return close
