"""Login throttling for ``POST /admin/api/login``: failed attempts per client address.

Guarantees:
    An address with ``max_failures`` failed logins within the last ``window`` seconds is
    refused (``retry_after`` > 0) until the oldest of them is ``window`` seconds old —
    a sliding window, so a steady guesser gets at most ``max_failures`` tries per
    ``window``. A successful login clears the address's failures. Memory is bounded:
    at most ``capacity`` addresses are tracked, each with at most ``max_failures``
    timestamps; past that the least recently failing address is forgotten first, so a
    flood of addresses costs its sender its own oldest entries, never unbounded memory.

Plain state logic: the caller passes the time (``time.monotonic()`` in the route), so it
is tested without a loop or a clock.

Error handling: nothing raises; unknown addresses are simply allowed.
"""

from __future__ import annotations

from collections import OrderedDict, deque

MAX_FAILURES = 5
WINDOW = 60.0  # seconds
CAPACITY = 10_000  # addresses tracked at once


class LoginThrottle:
    """Failed-login bookkeeping per client address (an LRU of sliding windows)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW,
                 capacity: int = CAPACITY) -> None:
        if max_failures < 1 or window <= 0 or capacity < 1:
            raise ValueError("max_failures, window and capacity must be positive")
        self.max_failures = max_failures
        self.window = window
        self.capacity = capacity
        # address -> failure times, oldest first; the dict's order is least recent first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds ``address`` must wait before its next attempt; 0.0 when it may try."""
        times = self._failures.get(address)
        if times is None:
            return 0.0
        self._expire(times, now)
        if not times:
            del self._failures[address]
            return 0.0
        if len(times) < self.max_failures:
            return 0.0
        return max(times[0] + self.window - now, 0.0)

    def failed(self, address: str, now: float) -> None:
        """Record a failed login from ``address`` at ``now``."""
        times = self._failures.pop(address, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
            while len(self._failures) >= self.capacity:
                self._failures.popitem(last=False)  # the least recently failing address
        self._expire(times, now)
        times.append(now)
        self._failures[address] = times  # (re)inserted last: the most recent

    def succeeded(self, address: str) -> None:
        """A correct password from ``address``: its failures are forgotten."""
        self._failures.pop(address, None)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
