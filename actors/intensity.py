"""Restart intensity: OTP's "at most N restarts in T seconds", as a plain class."""

from __future__ import annotations

from collections import deque


class RestartIntensity:
    """Counts restarts in a sliding window.

    ``record(now)`` returns False when the new restart would exceed ``max_restarts``
    within ``period`` seconds: the supervisor must then give up and escalate.
    ``max_restarts=0`` means any restart is too many.
    """

    __slots__ = ("_times", "max_restarts", "period")

    def __init__(self, max_restarts: int = 3, period: float = 5.0) -> None:
        if max_restarts < 0 or period <= 0:
            raise ValueError("max_restarts must be >= 0 and period > 0")
        self.max_restarts = max_restarts
        self.period = period
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Note a restart at ``now``; True if it stays within the intensity."""
        horizon = now - self.period
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        self._times.append(now)
        return len(self._times) <= self.max_restarts

    @property
    def recent(self) -> int:
        """Restarts currently inside the window (as of the last ``record``)."""
        return len(self._times)
