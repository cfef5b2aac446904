"""Prometheus metrics of one node: a registry per node, read mostly at scrape time.

The hot path pays almost nothing: deliveries, commands and slow consumers are the
node's plain ints, read by a custom collector when Prometheus scrapes; per-namespace
message counts are one ``Counter`` increment per *publication* (never per delivery);
the publish-to-deliver latency histogram observes one publication in
``LATENCY_SAMPLE_EVERY``. Labels have bounded cardinality: channels are counted by
namespace (``Config.namespace_of`` folds unconfigured names into one value), HTTP
endpoints by route pattern, actors by kind.

``GET /metrics`` serves the registry in the Prometheus text format (OpenMetrics when
the scraper asks for it). It needs ``Authorization: Bearer <prometheus.token>`` unless
``prometheus.insecure`` is true; nothing else opens it (not ``admin.secret``), and the
token opens nothing else, so a scraper's credential cannot act on the node. With no
token and not insecure, every scrape is a 401 whose text names ``prometheus.token``.

Error handling: the collector tolerates engines without ``statistics()``,
``link_up`` or ``reconnects``; a metric that cannot be read is left out of that
scrape rather than failing it.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from broker.monitor.board import MonitorBoard
from broker.transport.keys import NODE

if TYPE_CHECKING:
    from broker.node import Node

LATENCY_SAMPLE_EVERY = 8
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class NodeMetrics:
    """The node's registry, its hot-path tallies and the monitor's board."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.board = MonitorBoard()
        self.registry = CollectorRegistry(auto_describe=False)
        self.published_by_namespace: Counter[str] = Counter()
        self.delivered_by_namespace: Counter[str] = Counter()
        self._until_sample = LATENCY_SAMPLE_EVERY
        self.publish_latency = Histogram(
            "chorus_publish_deliver_seconds",
            "Publish call to the publication sitting in every local subscriber's outbox "
            f"(1 in {LATENCY_SAMPLE_EVERY} publications sampled)",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http_latency = Histogram(
            "chorus_http_request_seconds", "HTTP request latency by endpoint and status",
            ["endpoint", "status"], buckets=HTTP_BUCKETS, registry=self.registry)
        self.engine_round_trip = Histogram(
            "chorus_engine_round_trip_seconds", "Engine probe round trip (node monitor)",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.webhooks = PromCounter(
            "chorus_alert_webhooks", "Alert webhook POSTs by result", ["result"],
            registry=self.registry)
        ProcessCollector(registry=self.registry)
        self.registry.register(_NodeCollector(self))

    # -- hot-path hooks (called by the node) -------------------------------------------------
    def published(self, channel: str, started: float) -> None:
        """One publication accepted and handed to its shard; ``started`` = perf_counter."""
        self.published_by_namespace[self.node.config.namespace_of(channel)] += 1
        self._until_sample -= 1
        if not self._until_sample:
            self._until_sample = LATENCY_SAMPLE_EVERY
            self.publish_latency.observe(time.perf_counter() - started)

    def delivered(self, channel: str, count: int) -> None:
        self.delivered_by_namespace[self.node.config.namespace_of(channel)] += count

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry rendered for a scraper that sent ``Accept: accept``."""
        for accepted in accept.split(","):
            if accepted.split(";")[0].strip() == "application/openmetrics-text":
                return openmetrics.generate_latest(self.registry), openmetrics.CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(family: Any, items: Any) -> Any:
    for labels, value in items:
        family.add_metric(labels, value)
    return family


def flatten_statistics(stats: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric leaves of an engine's ``statistics()`` dataclass as ("a.b", value)."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        for f in dataclasses.fields(stats):
            yield from flatten_statistics(getattr(stats, f.name), f"{prefix}{f.name}.")
    elif isinstance(stats, dict):
        for key, value in stats.items():
            yield from flatten_statistics(value, f"{prefix}{key}.")
    elif isinstance(stats, int | float) and not isinstance(stats, bool):
        yield prefix.rstrip("."), float(stats)


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
        yield _labelled(GaugeMetricFamily("chorus_alerts_active", "Firing alerts (1 each)",
                                          labels=["alert", "severity"]),
                        (([a.rule.name, a.rule.severity], 1.0) for a in board.active_alerts))

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


# --- HTTP -----------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Handlers whose request lasts as long as a client connection (every client transport,
# registered by broker.transport.routes): not timed, and no latency label of their own.
LONG_LIVED: set[Callable[..., Any]] = set()


def _endpoint(request: web.Request) -> str | None:
    """A bounded label for the request's route; None for a client connection (long-lived)."""
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "(unmatched)"
    path = resource.canonical
    if route.handler in LONG_LIVED:
        return None
    if path.endswith("/api/{method}"):
        from broker.transport.http_api import METHODS

        method = request.match_info.get("method", "")
        name = method if method in METHODS or method == "batch" else "(unknown)"
        return path.replace("{method}", name)
    return path


@web.middleware
def http_metrics_middleware(request: web.Request,
                            handler: Handler) -> Awaitable[web.StreamResponse]:
    """Observe each request's latency by endpoint and status (after the node started).

    A plain function, not a coroutine: a client connection's handler (WebSocket, HTTP
    stream, SSE ...) runs for the connection's whole life, and a timing frame kept around
    it would cost every connection memory.
    """
    if request.match_info.handler in LONG_LIVED:
        return handler(request)
    return _timed(request, handler)


async def _timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        node = request.app[NODE]._node
        endpoint = _endpoint(request)
        if node is not None and endpoint is not None:
            node.metrics.http_latency.labels(endpoint, str(status)).observe(
                time.perf_counter() - started)


def bearer_matches(request: web.Request, secret: str) -> bool:
    """True when ``Authorization: Bearer <secret>`` (constant-time) and a secret is set."""
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


async def metrics_handler(request: web.Request) -> web.Response:
    state = request.app[NODE]
    config = state.config
    prometheus = config.prometheus
    if not prometheus.insecure and not bearer_matches(request, prometheus.token):
        unset = "" if prometheus.token else "prometheus.token is not set; "
        return web.Response(status=401, text=f"unauthorized: {unset}send Authorization: "
                                             "Bearer <prometheus.token> or set "
                                             "prometheus.insecure\n")
    body, content_type = state.node.metrics.exposition(request.headers.get("Accept", ""))
    response = web.Response(body=body)
    response.content_type = content_type  # set apart: aiohttp rejects ";" in the argument
    return response


def install_metrics(app: web.Application) -> None:
    """Add the HTTP latency middleware and, when ``prometheus.enabled``, ``GET /metrics``."""
    app.middlewares.append(http_metrics_middleware)
    if app[NODE].config.prometheus.enabled:
        app.router.add_get("/metrics", metrics_handler)
