"""Journey aggregates, kept incrementally as events arrive: pure state, no I/O, no clock.

``JourneyState.observe(event)`` takes one journey event (a dict, see
``broker.journal.events``) and updates everything an operator asks about at a glance:

* connect success ratio: connects over connect attempts (connects + auth failures +
  other refusals before the connect reply);
* time to connect (socket open → connect reply) and time to first publication (socket
  open → the connection's first publication), as log-bucket histograms: O(1) per
  event, quantiles within ``LogHistogram.PRECISION`` of the truth;
* recovery success ratio over subscribes that asked to recover;
* disconnects by code (at most ``MAX_CODES`` distinct codes, the rest as ``other``);
* the funnel connected → subscribed → first publication received, per connection;
* reconnects: a connect of a user whose last disconnect (on this node, or found in the
  shared store by the journal actor) is at most ``reconnect_window`` old, with the time
  away; and a storm detector (``StormDetector``) over them.

Guarantees: a disconnect is followed by at most one reconnect. Memory is bounded —
open connections tracked at most ``max_open`` (oldest forgotten first), users' last
disconnects and the disconnects already reconnected at most ``max_users`` each
(least recent forgotten first), the storm window
at most ``storm_threshold`` timestamps beyond the window's count.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

MAX_CODES = 64
MAX_OPEN = 1_000_000
MAX_USERS = 50_000

Event = dict[str, Any]


class LogHistogram:
    """Counts of positive values in logarithmic buckets (``BASE`` apart): an add is one
    ``log`` and a dict increment; ``quantile`` walks at most a few hundred buckets."""

    BASE = 2 ** 0.125  # 8 buckets per doubling: a quantile is within ~4.5% of the truth
    PRECISION = BASE - 1
    FLOOR = 1e-6  # values below a microsecond share the first bucket
    _PER_DOUBLING = 1 / math.log2(BASE)

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, value: float) -> None:
        # log base BASE as one log2 and a product (math.log(x, base) takes two logs).
        index = math.floor(math.log2(value if value > self.FLOOR else self.FLOOR)
                           * self._PER_DOUBLING)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """The value under which a fraction ``q`` of the values fall (the bucket's
        geometric middle); None without values."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return float(self.BASE ** (index + 0.5))
        return None  # pragma: no cover - rank <= count

    def summary(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.quantile(0.5), "p99": self.quantile(0.99)}


class StormDetector:
    """Many reconnects in a short window: ``storming`` once ``threshold`` reconnects fall
    within ``window`` seconds, until the count in the window drops below it again."""

    def __init__(self, window: float, threshold: int) -> None:
        self.window, self.threshold = window, threshold
        self.times: deque[float] = deque()
        self.storms = 0  # how many times a storm began
        self.storming = False

    def add(self, at: float) -> None:
        self.times.append(at)
        self._trim(at)
        if not self.storming and len(self.times) >= self.threshold:
            self.storming = True
            self.storms += 1

    def in_window(self, now: float) -> int:
        """Reconnects within the window ending at ``now``; ends a storm that has passed."""
        self._trim(now)
        if self.storming and len(self.times) < self.threshold:
            self.storming = False
        return len(self.times)

    def _trim(self, now: float) -> None:
        times, oldest = self.times, now - self.window
        while times and (times[0] < oldest or len(times) > self.threshold * 4):
            times.popleft()


@dataclass(slots=True)
class _Open:
    """What the funnel remembers of one live connection."""

    user: str
    opened_at: float  # socket open (connect event time - time_to_connect)
    subscribed: bool = False
    first_publication: bool = False


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(slots=True)
class JourneyState:
    """Aggregates over the journey events of one node (see the module docstring)."""

    reconnect_window: float = 300.0
    storm_window: float = 10.0
    storm_threshold: int = 50
    max_open: int = MAX_OPEN
    max_users: int = MAX_USERS
    events: int = 0
    connects: int = 0
    refused: int = 0  # auth failures and other refusals before the connect reply
    auth_failures: dict[int, int] = field(default_factory=dict)
    recoveries: int = 0
    recovered: int = 0
    replayed: int = 0
    subscribed: int = 0  # funnel: connections that subscribed at least once
    first_publications: int = 0  # funnel: connections that received a publication
    slow_consumers: int = 0
    limits: dict[int, int] = field(default_factory=dict)
    disconnects: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connect_time: LogHistogram = field(default_factory=LogHistogram)
    first_publication_time: LogHistogram = field(default_factory=LogHistogram)
    time_away: LogHistogram = field(default_factory=LogHistogram)
    open: OrderedDict[str, _Open] = field(default_factory=OrderedDict)
    last_disconnect: OrderedDict[str, Event] = field(default_factory=OrderedDict)
    # Disconnects (by client) already followed by a reconnect: each counts once, even
    # when another node's disconnect is found again for a user's next connection.
    consumed: OrderedDict[str, None] = field(default_factory=OrderedDict)
    storm: StormDetector = field(init=False)

    def __post_init__(self) -> None:
        self.storm = StormDetector(self.storm_window, self.storm_threshold)

    # -- feeding ---------------------------------------------------------------------
    def observe(self, event: Event) -> Event | None:
        """Account for ``event``; returns a derived ``reconnect`` event when a connect
        follows the same user's recent disconnect known here (else None)."""
        self.events += 1
        kind = event.get("event")
        handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
        return handler(self, event) if handler is not None else None

    def _connect(self, event: Event) -> Event | None:
        self.connects += 1
        took = float(event.get("time_to_connect") or 0.0)
        self.connect_time.add(took)
        client, user = str(event.get("client", "")), str(event.get("user", ""))
        self.open[client] = _Open(user, float(event["t"]) - took)
        while len(self.open) > self.max_open:
            self.open.popitem(last=False)
        previous = self.last_disconnect.pop(user, None) if user else None
        return self.reconnect(event, previous)

    def reconnect(self, connect: Event, previous: Event | None) -> Event | None:
        """The ``reconnect`` event for ``connect`` after the disconnect ``previous`` (from
        this node or the shared store), or None when there is none within the window."""
        if previous is None:
            return None
        away = float(connect["t"]) - float(previous["t"])
        gone = str(previous.get("client", ""))
        if away < 0 or away > self.reconnect_window or gone in self.consumed:
            return None
        self.consumed[gone] = None
        while len(self.consumed) > self.max_users:
            self.consumed.popitem(last=False)
        self.reconnects += 1
        self.time_away.add(away)
        self.storm.add(float(connect["t"]))
        return {"t": connect["t"], "event": "reconnect", "node": connect.get("node", ""),
                "client": connect.get("client", ""), "user": connect.get("user", ""),
                "time_away": away, "previous_code": previous.get("code"),
                "previous_client": previous.get("client", ""),
                "previous_node": previous.get("node", "")}

    def _refused(self, event: Event) -> None:
        self.refused += 1
        if event.get("event") == "auth_failure":
            code = int(event.get("code") or 0)
            self.auth_failures[code] = self.auth_failures.get(code, 0) + 1

    def _subscribe(self, event: Event) -> None:
        if event.get("recovering"):
            self.recoveries += 1
            if event.get("recovered"):
                self.recovered += 1
        replayed = int(event.get("replayed") or 0)
        self.replayed += replayed
        track = self.open.get(str(event.get("client", "")))
        if track is None:
            return
        if not track.subscribed:
            track.subscribed = True
            self.subscribed += 1
        if replayed:  # the subscribe reply carried publications: the first ones arrived
            self._first(track, float(event["t"]))

    def _first_publication(self, event: Event) -> None:
        track = self.open.get(str(event.get("client", "")))
        if track is not None:
            self._first(track, float(event["t"]))

    def _first(self, track: _Open, at: float) -> None:
        if not track.first_publication:
            track.first_publication = True
            self.first_publications += 1
            self.first_publication_time.add(max(0.0, at - track.opened_at))

    def _limit(self, event: Event) -> None:
        code = int(event.get("code") or 0)
        self.limits[code] = self.limits.get(code, 0) + 1
        if event.get("refused"):
            self.refused += 1

    def _slow(self, event: Event) -> None:
        self.slow_consumers += 1

    def _disconnect(self, event: Event) -> None:
        code = str(event.get("code"))
        if code not in self.disconnects and len(self.disconnects) >= MAX_CODES:
            code = "other"
        self.disconnects[code] = self.disconnects.get(code, 0) + 1
        self.open.pop(str(event.get("client", "")), None)
        user = str(event.get("user", ""))
        if user:
            self.last_disconnect.pop(user, None)
            self.last_disconnect[user] = event
            while len(self.last_disconnect) > self.max_users:
                self.last_disconnect.popitem(last=False)

    # -- reading ---------------------------------------------------------------------
    def knows_user(self, user: str) -> bool:
        return user in self.last_disconnect

    def storm_figures(self, now: float) -> dict[str, float]:
        """``reconnects_in_window`` and ``reconnect_storm`` (1 while storming) for the
        node monitor's sample (alert rules name them)."""
        count = self.storm.in_window(now)
        return {"reconnects_in_window": float(count),
                "reconnect_storm": 1.0 if self.storm.storming else 0.0}

    def summary(self, now: float) -> dict[str, Any]:
        """The aggregates as JSON for the admin API and the server API."""
        attempts = self.connects + self.refused
        storm = self.storm_figures(now)
        return {
            "events": self.events,
            "connects": self.connects, "connect_attempts": attempts,
            "connect_success_ratio": _ratio(self.connects, attempts),
            "auth_failures": {str(k): v for k, v in sorted(self.auth_failures.items())},
            "time_to_connect": self.connect_time.summary(),
            "time_to_first_publication": self.first_publication_time.summary(),
            "recoveries": self.recoveries, "recovered": self.recovered,
            "recovery_success_ratio": _ratio(self.recovered, self.recoveries),
            "publications_replayed": self.replayed,
            "disconnects_by_code": dict(sorted(self.disconnects.items())),
            "slow_consumers": self.slow_consumers,
            "limits": {str(k): v for k, v in sorted(self.limits.items())},
            "reconnects": self.reconnects, "time_away": self.time_away.summary(),
            "reconnects_in_window": int(storm["reconnects_in_window"]),
            "reconnect_storm": bool(storm["reconnect_storm"]), "storms": self.storm.storms,
            "storm_window": self.storm_window, "storm_threshold": self.storm_threshold,
            "open_connections": len(self.open),
            "funnel": {"connected": self.connects, "subscribed": self.subscribed,
                       "first_publication": self.first_publications},
        }


_HANDLERS: dict[str, Any] = {
    "connect": JourneyState._connect,
    "auth_failure": JourneyState._refused,
    "connect_failed": JourneyState._refused,
    "subscribe": JourneyState._subscribe,
    "first_publication": JourneyState._first_publication,
    "limit": JourneyState._limit,
    "slow_consumer": JourneyState._slow,
    "disconnect": JourneyState._disconnect,
}
