"""MonitorBoard: what the monitor actors last saw, published for synchronous readers.

The node monitor writes a sample per tick and the alert actor writes the active
alerts; the Prometheus collector and the admin API read them synchronously on the
same loop thread. Each field has exactly one writer, and readers copy, so no message
round trip is needed to answer a scrape (a collector cannot await).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from broker.monitor.alerts import Alert

CHART_POINTS = 300  # samples kept for the console's charts (5 minutes at 1 s)


@dataclass(slots=True)
class RestartTally:
    """Monotonic restart totals by actor kind, from the registry's per-id counts.

    The registry keeps a restart count per actor id (dropped when a temporary child
    goes); a Prometheus counter must never go down, so the tally adds only increases.
    Only ids that restarted at least once are remembered.
    """

    by_kind: dict[str, int] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)

    def update(self, records: Any) -> dict[str, int]:
        """``records``: iterable of objects with ``id``, ``kind``, ``restarts``."""
        seen = self._seen
        for record in records:
            restarts = record.restarts
            if not restarts:
                continue
            before = seen.get(record.id, 0)
            if restarts > before:
                self.by_kind[record.kind] = self.by_kind.get(record.kind, 0) + restarts - before
            seen[record.id] = restarts
        return self.by_kind

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


@dataclass(slots=True)
class MonitorBoard:
    """The latest sample, a short series for charts, and the alert state."""

    latest: dict[str, float] = field(default_factory=dict)
    taken_at: float = 0.0
    samples: int = 0
    chart: deque[tuple[float, dict[str, float]]] = field(
        default_factory=lambda: deque(maxlen=CHART_POINTS))
    active_alerts: list[Alert] = field(default_factory=list)
    recent_alerts: list[Alert] = field(default_factory=list)
    webhook_sent: int = 0
    webhook_failed: int = 0
    engine_probe_failures: int = 0
    restarts: RestartTally = field(default_factory=RestartTally)

    def record(self, now: float, sample: dict[str, float]) -> None:
        self.latest = sample
        self.taken_at = now
        self.samples += 1
        self.chart.append((now, sample))

    def chart_series(self, names: tuple[str, ...]) -> dict[str, Any]:
        """Columns for the console: ``{"t": [...], name: [...]}``."""
        points = list(self.chart)
        out: dict[str, Any] = {"t": [t for t, _ in points]}
        for name in names:
            out[name] = [sample.get(name) for _, sample in points]
        return out
