"""A circuit breaker per proxy: closed, open, half-open. Pure state, no I/O, no loop.

Guarantees:

* **closed** — calls go through; ``failures`` consecutive failures open it (a success in
  between starts the count again).
* **open** — calls are refused at once (``allow`` is False) for ``open_time`` seconds, so
  a dead backend costs its callers no waiting and gets no traffic.
* **half-open** — after ``open_time`` exactly one call (the probe) is let through; the
  others are refused while it runs. Its success closes the breaker, its failure opens it
  for another ``open_time``. A probe that ends without a verdict (its caller went away)
  frees the slot for the next call.

Outcomes of calls let through before the breaker opened and finishing after are ignored
while it is open or half-open: only the probe decides.

The clock is injected (``clock``: monotonic seconds), so tests drive it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}  # the state as a gauge


class CircuitBreaker:
    """See the module docstring. Not thread-safe: used from the event loop only."""

    __slots__ = ("_clock", "_failures", "_opened_at", "_probing", "_state", "failures",
                 "open_time", "opens")

    def __init__(self, failures: int, open_time: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or open_time <= 0:
            raise ValueError("failures must be >= 1 and open_time > 0")
        self.failures = failures
        self.open_time = open_time
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0  # times it opened, for metrics

    @property
    def state(self) -> str:
        """The current state; an open breaker whose time is up reads as half-open."""
        if self._state == OPEN and self._clock() - self._opened_at >= self.open_time:
            self._state = HALF_OPEN
            self._probing = False
        return self._state

    def allow(self) -> tuple[bool, bool]:
        """(may this call go through, is it the half-open probe)."""
        state = self.state
        if state == CLOSED:
            return True, False
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True, True
        return False, False

    def success(self, probe: bool) -> None:
        if probe and self._state == HALF_OPEN:
            self._state, self._probing = CLOSED, False
            self._failures = 0
        elif self._state == CLOSED:
            self._failures = 0

    def failure(self, probe: bool) -> None:
        if probe and self._state == HALF_OPEN:
            self._open()
        elif self._state == CLOSED:
            self._failures += 1
            if self._failures >= self.failures:
                self._open()

    def abandon(self, probe: bool) -> None:
        """A call ended without a verdict (cancelled): a probe's slot is freed."""
        if probe and self._state == HALF_OPEN:
            self._probing = False

    def _open(self) -> None:
        self._state, self._probing = OPEN, False
        self._opened_at = self._clock()
        self._failures = 0
        self.opens += 1

    def seconds_until_probe(self) -> float:
        """How long an open breaker still refuses everything (0 when not open)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.open_time - (self._clock() - self._opened_at))
