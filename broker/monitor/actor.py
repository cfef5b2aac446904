"""Monitor actors: the engine link watcher and the node monitor (loop lag, counts)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors import Actor

if TYPE_CHECKING:
    from broker.node import Node


@dataclass(slots=True)
class _Sample:
    expected: float


class NodeMonitorActor(Actor):
    """Samples event-loop lag once a second: how late a timer fires is how busy the loop is."""

    kind = "monitor"
    interval = 1.0

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop_lag = 0.0
        self.samples = 0

    def on_start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        self.start_timer(self.interval, _Sample(time.monotonic() + self.interval))

    def receive(self, message: Any) -> Any:
        if isinstance(message, _Sample):
            self.loop_lag = max(0.0, time.monotonic() - message.expected)
            self.samples += 1
            self.node.loop_lag = self.loop_lag
            self._arm()
            return None
        return super().receive(message)


class EngineLinkActor(Actor):
    """Owns the engine's place in the tree; the Redis engine reports its link here."""

    kind = "engine"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.up = True

    def receive(self, message: Any) -> Any:
        if message == "status":
            return {"engine": self.node.engine.name, "up": self.up}
        return super().receive(message)
