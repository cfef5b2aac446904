"""Test helpers: a probe actor that records what it gets, and a manual clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from actors.actor import Actor


class Probe:
    """What a ``ProbeActor`` received, shared across its restarts, with awaitable waits."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.starts = 0
        self.stops = 0
        self._changed = asyncio.Event()

    def note(self, message: Any) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 2.0) -> None:
        """Wait until ``predicate(self.messages)`` holds; raises TimeoutError otherwise."""

        async def waiter() -> None:
            while not predicate(self.messages):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiter(), timeout)


class ProbeActor(Actor):
    """Records every message into its ``Probe``; answers asks with the message itself.

    Send ``("crash", reason)`` to make it raise, ``("stop",)`` to stop it normally.
    """

    kind = "probe"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_start(self) -> None:
        self.probe.starts += 1
        self.probe.note(("started", self.id))

    def on_stop(self) -> None:
        self.probe.stops += 1
        self.probe.note(("stopped", self.id))

    def receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[:1] == ("crash",):
            raise RuntimeError(message[1] if len(message) > 1 else "probe crash")
        if message == ("stop",):
            self.stop()
            return None
        self.probe.note(message)
        return message


class _ManualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


_Entry = tuple[float, int, _ManualHandle, Callable[..., None], tuple[Any, ...]]


class ManualClock:
    """A clock whose time moves only when a test calls ``advance``.

    Timers due within the advanced span fire in order of their due time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._heap: list[_Entry] = []

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> _ManualHandle:
        handle = _ManualHandle()
        heapq.heappush(self._heap, (self._now + delay, next(self._seq), handle, callback, args))
        return handle

    def advance(self, seconds: float) -> int:
        """Move time forward, firing due timers; returns how many fired."""
        target = self._now + seconds
        fired = 0
        while self._heap and self._heap[0][0] <= target:
            due, _, handle, callback, args = heapq.heappop(self._heap)
            self._now = due
            if not handle.cancelled:
                callback(*args)
                fired += 1
        self._now = target
        return fired

    @property
    def pending(self) -> int:
        return sum(1 for entry in self._heap if not entry[2].cancelled)
