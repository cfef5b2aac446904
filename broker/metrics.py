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
import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.monitor.board import MonitorBoard
from broker.transport.keys import NODE

if TYPE_CHECKING:
    from broker.node import Node

LATENCY_SAMPLE_EVERY = 8
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Series:
    """One histogram series: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount


class Histogram:
    """A Prometheus histogram kept without prometheus_client (rendered at scrape time by
    broker.metrics_export). ``labels(*values)`` selects a series; ``observe`` is for a
    histogram without labels. Buckets are upper bounds; +Inf is added."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...],
                 labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.bounds = (*sorted(buckets), math.inf)
        self.series: dict[tuple[str, ...], Series] = {}
        if not labels:
            self.series[()] = Series(self.bounds)

    def labels(self, *values: str) -> Series:
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.label_names):
                raise ValueError(f"{self.name}: expected labels {self.label_names}, got {values}")
            series = self.series[values] = Series(self.bounds)
        return series

    def observe(self, amount: float) -> None:
        self.series[()].observe(amount)


class LabelledCounter:
    """A counter by one label's value, rendered like Histogram."""

    def __init__(self, name: str, doc: str, label: str) -> None:
        self.name, self.doc, self.label_names = name, doc, (label,)
        self.values: dict[str, float] = {}

    def labels(self, value: str) -> _Increment:
        return _Increment(self.values, value)


class _Increment:
    __slots__ = ("key", "values")

    def __init__(self, values: dict[str, float], key: str) -> None:
        self.values, self.key = values, key

    def inc(self, amount: float = 1.0) -> None:
        self.values[self.key] = self.values.get(self.key, 0.0) + amount


class NodeMetrics:
    """The node's hot-path tallies, histograms and the monitor's board.

    prometheus_client is imported at the first scrape (``exposition``), not at start:
    it is among the slowest imports of a node, and a node never scraped never needs it.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.board = MonitorBoard()
        self.published_by_namespace: Counter[str] = Counter()
        self.delivered_by_namespace: Counter[str] = Counter()
        self._until_sample = LATENCY_SAMPLE_EVERY
        self.publish_latency = Histogram(
            "chorus_publish_deliver_seconds",
            "Publish call to the publication sitting in every local subscriber's outbox "
            f"(1 in {LATENCY_SAMPLE_EVERY} publications sampled)", LATENCY_BUCKETS)
        self.http_latency = Histogram(
            "chorus_http_request_seconds", "HTTP request latency by endpoint and status",
            HTTP_BUCKETS, ("endpoint", "status"))
        self.engine_round_trip = Histogram(
            "chorus_engine_round_trip_seconds", "Engine probe round trip (node monitor)",
            LATENCY_BUCKETS)
        self.webhooks = LabelledCounter(
            "chorus_alert_webhooks", "Alert webhook POSTs by result", "result")
        self._registry: Any = None
        # More families read at scrape time (e.g. the proxies'); each returns an iterable
        # of prometheus_client metric families, importing the library only when called.
        self.extra_collectors: list[Callable[[], Iterable[Any]]] = []

    @property
    def registry(self) -> Any:
        """The prometheus_client CollectorRegistry (made, and the library imported, on
        first use)."""
        if self._registry is None:
            from broker.metrics_export import build_registry

            self._registry = build_registry(self)
        return self._registry

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
        from broker.metrics_export import render

        return render(self.registry, accept)


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
