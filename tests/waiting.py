"""One way for tests to wait for a state that has no event to await: poll with a deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Predicate = Callable[[], bool | Awaitable[bool]]


async def wait_until(predicate: Predicate, what: str = "the condition", timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
