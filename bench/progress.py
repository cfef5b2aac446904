"""A single progress line on stderr: phase, connections up, publications sent, elapsed.

On a terminal the line is redrawn in place (at most 5 times a second); otherwise (CI logs,
pipes) a new line is written at most every 2 seconds and on every phase change, so logs
stay short. Never raises: progress output must not break a measurement.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Holds the current counters and renders them, rate-limited."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.label = ""
        self.phase = "start"
        self.conns_up = 0
        self.conns_target = 0
        self.pubs_sent = 0
        self.pubs_target = 0
        self.received = 0
        self._last_draw = 0.0
        self._dirty_width = 0

    def set(self, phase: str | None = None, **counters: int) -> None:
        """Update the phase and/or counters, then redraw if due."""
        changed = phase is not None and phase != self.phase
        if phase is not None:
            self.phase = phase
        for name, value in counters.items():
            setattr(self, name, value)
        self.draw(force=changed)

    def line(self) -> str:
        """The current progress text."""
        parts = [f"[{self.label}] {self.phase}" if self.label else self.phase]
        if self.conns_target:
            parts.append(f"conns {self.conns_up}/{self.conns_target}")
        if self.pubs_target:
            parts.append(f"pubs {self.pubs_sent}/{self.pubs_target}")
        if self.received:
            parts.append(f"deliveries {self.received}")
        parts.append(f"elapsed {time.monotonic() - self.started:.1f}s")
        return "  ".join(parts)

    def draw(self, force: bool = False) -> None:
        """Write the line if enough time passed since the last one (or `force`)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < (0.2 if self.tty else 2.0):
            return
        self._last_draw = now
        text = self.line()
        try:
            if self.tty:
                pad = max(0, self._dirty_width - len(text))
                self.stream.write("\r" + text + " " * pad)
                self._dirty_width = len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # stderr went away; keep measuring

    def note(self, message: str) -> None:
        """A permanent message above the progress line."""
        if not self.enabled:
            return
        try:
            if self.tty and self._dirty_width:
                self.stream.write("\r" + " " * self._dirty_width + "\r")
                self._dirty_width = 0
            self.stream.write(message + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False
