"""The Prometheus side of broker.metrics, imported at the first scrape.

``build_registry`` makes a node's CollectorRegistry: the process collector and one
collector that reads, at scrape time, the node's plain counters, the monitor board and
broker.metrics' histograms (kept without prometheus_client so that a node starts without
importing it). ``render`` writes the Prometheus text format, or OpenMetrics when the
scraper asks for it.

Error handling: see broker.metrics (a metric that cannot be read is left out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString

from broker.metrics import Histogram, NodeMetrics, flatten_statistics

if TYPE_CHECKING:
    from broker.monitor.board import MonitorBoard
    from broker.node import Node

__all__ = ["build_registry", "render"]


def build_registry(metrics: NodeMetrics) -> CollectorRegistry:
    """A registry with the process collector and the node's collector."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(_NodeCollector(metrics))
    return registry


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The registry rendered for a scraper that sent ``Accept: accept``."""
    for accepted in accept.split(","):
        if accepted.split(";")[0].strip() == "application/openmetrics-text":
            return openmetrics.generate_latest(registry), openmetrics.CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(histogram: Histogram) -> HistogramMetricFamily:
    """One family for a broker.metrics Histogram: cumulative buckets, sum, per series."""
    family = HistogramMetricFamily(histogram.name, histogram.doc,
                                   labels=list(histogram.label_names))
    for labels, series in list(histogram.series.items()):
        running, buckets = 0, []
        for bound, count in zip(series.bounds, series.counts, strict=True):
            running += count
            buckets.append((floatToGoString(bound), float(running)))
        family.add_metric(list(labels), buckets, series.sum)
    return family


def _labelled(family: Any, items: Any) -> Any:
    for labels, value in items:
        family.add_metric(labels, value)
    return family


class _NodeCollector:
    """Reads the node's plain counters and the monitor board at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    @staticmethod
    def _cache(node: Node) -> Iterator[Metric]:
        """The shards' L1 cache (broker.cache): hits, misses, evictions, bytes."""
        cache = getattr(node, "cache", None)
        if cache is None:
            return
        stats = cache.as_dict()
        for key in ("hits", "misses", "evictions", "flushed", "lost"):
            yield CounterMetricFamily(f"chorus_cache_{key}", f"L1 cache {key}",
                                      value=stats[key])
        yield _gauge("chorus_cache_bytes", "Bytes held by the L1 cache", stats["bytes"])
        yield _gauge("chorus_cache_entries", "Channels held by the L1 cache", stats["entries"])
        yield _gauge("chorus_cache_write_behind_pending",
                     "Write-behind publications not yet in the engine", stats["pending"])

    def collect(self) -> Iterator[Metric]:
        metrics, node = self.metrics, self.metrics.node
        for histogram in (metrics.publish_latency, metrics.http_latency,
                          metrics.engine_round_trip):
            yield _histogram(histogram)
        yield _labelled(CounterMetricFamily(metrics.webhooks.name, metrics.webhooks.doc,
                                            labels=list(metrics.webhooks.label_names)),
                        (([k], v) for k, v in metrics.webhooks.values.items()))
        board = metrics.board
        connections = list(node.connections.values())
        yield _gauge("chorus_connections", "Open client connections", len(connections))
        by_transport = GaugeMetricFamily("chorus_transport_connections",
                                         "Open client connections per transport",
                                         labels=["transport"])
        for name, count in sorted(Counter(c.link.name for c in connections).items()):
            by_transport.add_metric([name], count)
        yield by_transport
        routes = CounterMetricFamily("chorus_emulation_requests",
                                     "/emulation requests by route (local, forwarded to the "
                                     "session's node, unknown node)", labels=["route"])
        for route, count in sorted(node.emulation_routes.items()):
            routes.add_metric([route], count)
        yield routes
        surveys = CounterMetricFamily("chorus_surveys",
                                      "Surveys of every node (the channels APIs) by outcome, "
                                      "and other nodes' survey requests answered or dropped",
                                      labels=["result"])
        for outcome, count in sorted(node.surveys.table.outcomes.items()):
            surveys.add_metric([outcome], count)
        yield surveys
        yield _gauge("chorus_users", "Distinct authenticated users", len(node.users))
        yield _gauge("chorus_subscriptions", "Client subscriptions on this node",
                     sum(len(c.session.subs) for c in connections))
        yield _gauge("chorus_channels", "Channels with local subscribers (last monitor sample)",
                     board.latest.get("channels", 0.0))
        yield _gauge("chorus_outbox_bytes", "Bytes queued in connection outboxes",
                     sum(c.outbox.pending_bytes for c in connections))
        yield _gauge("chorus_loop_lag_seconds", "Event loop lag (last monitor sample)",
                     node.loop_lag)
        yield CounterMetricFamily("chorus_publications", "Publications accepted by this node",
                                  value=node.publications)
        yield CounterMetricFamily("chorus_deliveries", "Publications written to outboxes",
                                  value=node.deliveries)
        yield CounterMetricFamily("chorus_slow_consumer_disconnects",
                                  "Connections closed because their outbox overflowed",
                                  value=node.slow_consumers)
        yield _labelled(CounterMetricFamily("chorus_client_commands", "Client commands by method",
                                            labels=["method"]),
                        (([m], v) for m, v in node.commands.items()))
        yield _labelled(CounterMetricFamily("chorus_messages_in", "Publications by namespace",
                                            labels=["namespace"]),
                        (([ns], v) for ns, v in metrics.published_by_namespace.items()))
        yield _labelled(CounterMetricFamily("chorus_messages_out",
                                            "Deliveries to subscribers by namespace",
                                            labels=["namespace"]),
                        (([ns], v) for ns, v in metrics.delivered_by_namespace.items()))
        yield from self._actors(node, board)
        yield from self._engine(node, board)
        yield from self._cache(node)
        yield from self._consumers(node)
        yield from self._pusher(node)
        for extra in metrics.extra_collectors:
            yield from extra()
        yield _labelled(GaugeMetricFamily("chorus_alerts_active", "Firing alerts (1 each)",
                                          labels=["alert", "severity"]),
                        (([a.rule.name, a.rule.severity], 1.0) for a in board.active_alerts))

    @staticmethod
    def _pusher(node: Node) -> Iterator[Metric]:
        """Pusher apps (broker.pusher), labelled by app id only: never by channel."""
        if not node.config.pusher.apps:
            return
        from broker.pusher.state import local_channels, pusher_state

        state = pusher_state(node)
        channels = local_channels(node)
        apps = [app.id for app in node.config.pusher.apps]
        yield _labelled(GaugeMetricFamily("chorus_pusher_connections",
                                          "Open Pusher sockets per app", labels=["app"]),
                        (([a], state.connections(a)) for a in apps))
        yield _labelled(GaugeMetricFamily("chorus_pusher_channels",
                                          "Pusher channels with subscribers on this node",
                                          labels=["app"]),
                        (([a], len(channels.get(a, ()))) for a in apps))
        yield _labelled(CounterMetricFamily("chorus_pusher_client_events",
                                            "client-* events accepted from sockets",
                                            labels=["app"]),
                        (([a], state.events_in[a]) for a in apps))
        yield _labelled(CounterMetricFamily("chorus_pusher_api_calls",
                                            "Pusher HTTP API requests", labels=["app"]),
                        (([a], state.api_calls[a]) for a in apps))
        results = state.webhooks.results if state.webhooks is not None else {}
        yield _labelled(CounterMetricFamily("chorus_pusher_webhooks",
                                            "Pusher webhook POSTs by result (sent, or failed "
                                            "after every retry)", labels=["app", "result"]),
                        (([a, r], results.get((a, r), 0)) for a in apps
                         for r in ("sent", "failed")))

    @staticmethod
    def _consumers(node: Node) -> Iterator[Metric]:
        """The async consumers (broker.consumers), one label value per configured name."""
        board = getattr(node, "consumers", None)
        if board is None or not len(board):
            return
        labels = ["consumer", "type"]
        for key, doc in (("processed", "Rows or entries published and removed"),
                         ("redeliveries", "Rows or entries the engine had already published "
                                          "(suppressed by their idempotency key)"),
                         ("invalid", "Rows or entries dropped: they can never be published"),
                         ("errors", "Temporary failures (database, Redis, engine), retried")):
            yield _labelled(CounterMetricFamily(f"chorus_consumer_{key}", doc, labels=labels),
                            (([s.name, s.type], getattr(s, key)) for s in board))
        yield _labelled(GaugeMetricFamily("chorus_consumer_lag",
                                          "Rows or entries waiting at the last probe",
                                          labels=labels),
                        (([s.name, s.type], s.lag) for s in board if s.lag is not None))
        yield _labelled(GaugeMetricFamily("chorus_consumer_partitions_owned",
                                          "Partitions (or streams) this node held at its last try",
                                          labels=labels),
                        (([s.name, s.type], len(s.owned)) for s in board))

    def _actors(self, node: Node, board: MonitorBoard) -> Iterator[Metric]:
        registry = node.runtime.registry
        records = [r for r in (registry.get(i) for i in registry.ids()) if r is not None]
        by_kind = Counter(r.kind for r in records)
        yield _labelled(GaugeMetricFamily("chorus_actors", "Live actors by kind", labels=["kind"]),
                        (([k], v) for k, v in by_kind.items()))
        restarts = board.restarts.update(records)
        yield _labelled(CounterMetricFamily("chorus_actor_restarts", "Actor restarts by kind",
                                            labels=["kind"]),
                        (([k], v) for k, v in restarts.items()))
        yield CounterMetricFamily("chorus_dead_letters", "Messages to actors that were gone",
                                  value=node.runtime.dead_letters)

    def _engine(self, node: Node, board: MonitorBoard) -> Iterator[Metric]:
        engine = node.engine
        yield _gauge("chorus_engine_up", "1 while the engine link is up",
                     1.0 if getattr(engine, "link_up", True) else 0.0)
        reconnects = getattr(engine, "reconnects", None)
        if isinstance(reconnects, int):
            yield CounterMetricFamily("chorus_engine_reconnects", "Engine reconnects",
                                      value=reconnects)
        yield CounterMetricFamily("chorus_engine_probe_failures", "Failed engine probes",
                                  value=board.engine_probe_failures)
        statistics = getattr(engine, "statistics", None)
        if callable(statistics):
            try:
                leaves = list(flatten_statistics(statistics()))
            except Exception:  # an engine mid-reconnect: skip this scrape's statistics
                leaves = []
            yield _labelled(GaugeMetricFamily("chorus_engine_statistic",
                                              "Engine statistics() leaves", labels=["name"]),
                            (([name], value) for name, value in leaves))
