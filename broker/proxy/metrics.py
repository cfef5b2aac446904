"""Per-proxy metrics: calls, errors by reason, latency, in-flight, breaker state.

Calls and errors are plain dict tallies, read by a collector at scrape time. Latency is a
Prometheus histogram observed on *every* call: an observation costs about a microsecond,
against a proxy call's hundreds (a local HTTP round trip) — sampling would save nothing
worth the lost resolution on a low-traffic proxy. Labels are bounded: ``proxy`` is a
configured proxy name ("client/connect", "default/subscribe", a name from ``proxies``,
"hook/<event>"), ``kind`` one of six events, ``reason`` one of a fixed set.

Failures are logged at most once per ``LOG_EVERY`` seconds per proxy (with how many were
left out), so a dead backend under load does not flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from broker.metrics import Histogram
from broker.proxy.breaker import STATE_VALUES

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from broker.metrics import NodeMetrics

log = logging.getLogger("chorus.proxy")

PROXY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                 2.5, 5.0, 10.0)
LOG_EVERY = 5.0


class Instance(Protocol):
    name: str
    in_flight: int

    def snapshot(self) -> dict[str, Any]: ...


class ProxyMetrics:
    """Tallies per (proxy, kind); the collector reads them and the instances."""

    def __init__(self, node_metrics: NodeMetrics | None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.seconds: dict[tuple[str, str], float] = {}
        self.instances: list[Instance] = []
        self._logged: dict[str, tuple[float, int]] = {}
        self.latency = Histogram(
            "chorus_proxy_call_seconds", "Proxy and hook call latency (every call)",
            PROXY_BUCKETS, ("proxy", "kind"))
        if node_metrics is not None:  # read at scrape time, prometheus_client only then
            node_metrics.extra_collectors.append(_ProxyCollector(self).collect)

    def observe(self, proxy: str, kind: str, seconds: float, reason: str | None) -> None:
        key = (proxy, kind)
        self.calls[key] += 1
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.latency.labels(proxy, kind).observe(seconds)
        if reason is not None:
            self.errors[(proxy, kind, reason)] += 1

    def log_failure(self, proxy: str, kind: str, error: BaseException) -> None:
        now = time.monotonic()
        last, skipped = self._logged.get(proxy, (0.0, 0))
        if now - last < LOG_EVERY:
            self._logged[proxy] = (last, skipped + 1)
            return
        self._logged[proxy] = (now, 0)
        more = f" ({skipped} more failures not logged)" if skipped else ""
        log.warning("%s proxy call failed: %s%s", kind, error, more)

    def by_instance(self, name: str) -> dict[str, Any]:
        """Calls, errors and mean latency per kind of one instance, for the admin API."""
        kinds: dict[str, Any] = {}
        for (proxy, kind), calls in self.calls.items():
            if proxy != name:
                continue
            errors = {reason: n for (p, k, reason), n in self.errors.items()
                      if p == name and k == kind}
            kinds[kind] = {"calls": calls, "errors": sum(errors.values()),
                           "error_reasons": errors,
                           "mean_ms": round(self.seconds[(proxy, kind)] / calls * 1000, 3)}
        return kinds


def _labelled(family: Any, items: Iterable[tuple[list[str], float]]) -> Any:
    for labels, value in items:
        family.add_metric(labels, value)
    return family


class _ProxyCollector:
    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from broker.metrics_export import _histogram

        m = self.metrics
        yield _histogram(m.latency)
        yield _labelled(CounterMetricFamily("chorus_proxy_calls", "Proxy and hook calls",
                                            labels=["proxy", "kind"]),
                        ((list(key), n) for key, n in m.calls.items()))
        yield _labelled(CounterMetricFamily("chorus_proxy_errors",
                                            "Failed proxy and hook calls (client got 100)",
                                            labels=["proxy", "kind", "reason"]),
                        ((list(key), n) for key, n in m.errors.items()))
        yield _labelled(GaugeMetricFamily("chorus_proxy_in_flight", "Calls in flight",
                                          labels=["proxy"]),
                        (([i.name], i.in_flight) for i in m.instances))
        snaps = [i.snapshot() for i in m.instances]
        yield _labelled(GaugeMetricFamily(
            "chorus_proxy_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["proxy"]),
            (([s["name"]], STATE_VALUES[s["breaker"]]) for s in snaps if s["breaker"]))
        yield _labelled(CounterMetricFamily("chorus_proxy_breaker_opens",
                                            "Times the circuit breaker opened",
                                            labels=["proxy"]),
                        (([s["name"]], s["breaker_opens"]) for s in snaps if s["breaker"]))
