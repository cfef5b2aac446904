"""Monitor actors: the engine link watcher, the node monitor and the alert actor.

The node monitor ticks every ``monitor.interval``: it measures loop lag (how late its
timer fired), takes a sample (``Sampler``), publishes it on the node's
``MonitorBoard`` for scrapes and the console, probes the engine's round trip as an
effect, and tells the alert actor. The alert actor evaluates the configured rules
(``AlertEvaluator``) and POSTs changes to ``monitor.webhook_url`` as an effect.

Failure policy: all three are permanent children of the ``monitors`` supervisor
(one_for_one). A restarted node monitor starts a fresh rate baseline; a restarted
alert actor forgets pending and firing alerts (they fire again if still true).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from actors import Actor
from broker.monitor.alerts import Alert, AlertEvaluator
from broker.monitor.sampler import Sampler
from broker.names import ALERTS_ID

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.monitor")

PROBE_CHANNEL = "__chorus_probe__"


@dataclass(slots=True)
class _Tick:
    """Time to sample the node (``expected``: when this tick was due)."""

    expected: float


@dataclass(slots=True)
class _ProbeDone:
    """The engine probe finished (``ok``: it answered)."""

    ok: bool


@dataclass(slots=True)
class MonitorSample:
    """One node-monitor sample, told to the alert actor."""

    at: float  # unix seconds
    values: dict[str, float]


class NodeMonitorActor(Actor):
    """Samples the node on a timer into the board; loop lag is how late the timer fired."""

    kind = "monitor"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.board = node.metrics.board
        self.interval = node.config.monitor.interval
        self.sampler = Sampler(node, self.board)
        self.loop_lag = 0.0
        self.samples = 0
        self._probing = False

    def on_start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        self.start_timer(self.interval, _Tick(time.monotonic() + self.interval))

    def receive(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            self._tick(message)
        elif isinstance(message, _ProbeDone):
            self._probing = False
            if not message.ok:
                self.board.engine_probe_failures += 1
        elif message == "sample":
            return dict(self.board.latest)
        else:
            return super().receive(message)
        return None

    def _tick(self, tick: _Tick) -> None:
        now = time.monotonic()
        self.loop_lag = max(0.0, now - tick.expected)
        self.node.loop_lag = self.loop_lag
        self.samples += 1
        self._arm()
        sample = self.sampler.take(now)
        wall = time.time()
        self.board.record(wall, sample)
        self.tell(ALERTS_ID, MonitorSample(wall, sample))
        self._probe()

    def _probe(self) -> None:
        """Time one cheap engine call (a real round trip on Redis); one in flight at most."""
        if self._probing:
            return
        self._probing = True
        engine = self.node.engine
        ping = getattr(engine, "ping", None)
        call = ping() if callable(ping) else engine.presence_stats(PROBE_CHANNEL)
        self.run_effect(_timed(self.node.metrics.engine_round_trip, call),
                        on_result=lambda _: self.receive(_ProbeDone(True)),
                        on_error=lambda _: self.receive(_ProbeDone(False)))


class AlertActor(Actor):
    """Evaluates the alert rules on every sample; keeps the board's alert lists current."""

    kind = "alerts"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.board = node.metrics.board
        self.evaluator = AlertEvaluator(node.config.monitor.rules)

    def on_start(self) -> None:
        self.board.active_alerts = []

    def receive(self, message: Any) -> Any:
        if isinstance(message, MonitorSample):
            changed = self.evaluator.observe(message.at, message.values)
            self.board.active_alerts = self.evaluator.active
            if changed:
                self.board.recent_alerts = list(self.evaluator.recent)
                for alert in changed:
                    self._announce(alert)
            return None
        if message == "active":
            return [a.to_dict() for a in self.evaluator.active]
        return super().receive(message)

    def _announce(self, alert: Alert) -> None:
        state = "resolved" if alert.resolved_at is not None else "firing"
        log.warning("alert %s %s: %s", alert.rule.name, state, alert.message)
        url = self.node.config.monitor.webhook_url
        if url:
            body = {"node": self.node.name, "status": state, "alert": alert.to_dict()}
            self.run_effect(post_json(url, body, self.node.config.monitor.webhook_timeout),
                            on_result=lambda _: self._webhook_done(True),
                            on_error=lambda error: self._webhook_done(False, error))

    def _webhook_done(self, ok: bool, error: BaseException | None = None) -> None:
        if ok:
            self.board.webhook_sent += 1
        else:
            self.board.webhook_failed += 1
            log.warning("alert webhook failed: %r", error)
        self.node.metrics.webhooks.labels("ok" if ok else "error").inc()


async def _timed(histogram: Any, call: Awaitable[Any]) -> Any:
    """Await ``call`` and observe its duration in ``histogram``, failed calls too (as
    prometheus-async's ``aio.time``, which is not imported: it costs ~25 ms at start)."""
    started = time.perf_counter()
    try:
        return await call
    finally:
        histogram.observe(time.perf_counter() - started)


async def post_json(url: str, body: dict[str, Any], timeout: float) -> int:
    """POST ``body`` as JSON; returns the status.

    Error handling: raises on a connection error, a timeout or a non-2xx status.
    """
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.post(url, json=body) as response:
        response.raise_for_status()
        return response.status
