"""What one node-monitor tick measures: counts from the node, rates, and the process.

``Sampler.take`` reads the node's directory and counters synchronously (no actor
messages: every read is a ``len`` or a sum over the node's connections) and returns a
flat ``{metric: value}`` dict with the names that alert rules use
(``broker.monitor.alerts.METRICS``).

Error handling: process figures come from ``/proc/self``; where it cannot be read
(another OS, a sandbox) those metrics are left out of the sample, and rules that use
them simply do not evaluate.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.monitor.board import MonitorBoard
    from broker.node import Node

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_stats() -> dict[str, float]:
    """RSS, open file descriptors and their soft limit of this process (where readable)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/statm", "rb") as statm:
            out["rss_bytes"] = float(int(statm.read().split()[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        pass
    with contextlib.suppress(OSError):
        out["open_files"] = float(len(os.listdir("/proc/self/fd")))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        out["open_files_limit"] = float(soft)
    return out


HEAVY_EVERY = 5  # samples between walks over every connection, actor and descriptor


class Sampler:
    """Builds samples; remembers the previous counters to turn them into rates."""

    def __init__(self, node: Node, board: MonitorBoard) -> None:
        self.node = node
        self.board = board
        self._last: tuple[float, int, int, int] | None = None
        self._taken = 0
        self._heavy: dict[str, float] = {}

    def take(self, now: float) -> dict[str, float]:
        """One sample at monotonic time ``now``."""
        node = self.node
        sample: dict[str, float] = {
            "connections": float(len(node.connections)),
            "users": float(len(node.users)),
            "subscriptions": float(node.subscriptions),
            "channels": float(len(node.channel_subscribers)),
            "loop_lag": node.loop_lag,
            "slow_consumers": float(node.slow_consumers),
            "engine_up": 1.0 if getattr(node.engine, "link_up", True) else 0.0,
            "proxy_breakers_open": float(node.proxies.breakers_open()),
        }
        if node.journeys is not None:  # reconnect storms (broker.journal)
            sample.update(node.journeys.state.storm_figures(time.time()))
        if self._taken % HEAVY_EVERY == 0:
            self._heavy = self._heavy_figures()
        self._taken += 1
        sample.update(self._heavy)
        sample.update(self._rates(now))
        return sample

    def _heavy_figures(self) -> dict[str, float]:
        """What costs a walk over every connection and actor, or every open descriptor:
        refreshed every ``HEAVY_EVERY`` samples, not every second (10K connections)."""
        node = self.node
        registry = node.runtime.registry
        records = [r for r in (registry.get(i) for i in registry.ids()) if r is not None]
        figures = {
            "outbox_bytes": float(sum(c.outbox.pending_bytes for c in node.connections.values())),
            "actor_restarts": float(sum(self.board.restarts.update(records).values())),
        }
        figures.update(process_stats())
        return figures

    def _rates(self, now: float) -> dict[str, float]:
        node = self.node
        counters = (now, node.publications, node.deliveries, sum(node.commands.values()))
        last, self._last = self._last, counters
        if last is None or now <= last[0]:
            return {"publications_rate": 0.0, "deliveries_rate": 0.0, "commands_rate": 0.0}
        dt = now - last[0]
        return {"publications_rate": (counters[1] - last[1]) / dt,
                "deliveries_rate": (counters[2] - last[2]) / dt,
                "commands_rate": (counters[3] - last[3]) / dt}
