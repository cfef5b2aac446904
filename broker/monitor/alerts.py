"""Alert rules: parsed from config strings, evaluated over the node monitor's samples.

Pure logic, no I/O and no clock of its own: the node monitor feeds ``AlertEvaluator``
one sample (a time and a mapping of metric name to value) per tick and gets back the
alerts that started or ended. Tests drive it with synthetic series.

Two kinds of rule, written the way an operator says them::

    loop_lag > 100ms for 30s                          # threshold held for a duration
    high_rss: rss_bytes >= 2GiB for 1m severity critical
    open_files will exceed open_files_limit within 10m      # trend
    connections will exceed 9000 within 10m window 5m

A *threshold* rule fires once its condition has held on every sample for ``for``
(0 = at the first sample) and resolves at the first sample where it does not hold.
A *trend* rule fits a least-squares line to the metric over the last ``window``
(default: the horizon, at most 10 minutes) and fires when the line reaches the limit
within ``horizon`` from now (or the metric is already past it); it resolves when the
projection no longer reaches the limit in time. A limit may name another metric of the
same sample (``open_files_limit``), so one rule fits every machine.

Error handling: ``parse_rule`` raises ``RuleError`` with a message naming what is wrong;
the config layer prefixes the key path. A sample missing a rule's metric (or its limit
metric) leaves that rule's state unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Metrics the node monitor samples; rules may name only these.
METRICS: tuple[str, ...] = (
    "connections", "users", "subscriptions", "channels", "loop_lag", "rss_bytes",
    "open_files", "open_files_limit", "engine_up", "outbox_bytes", "slow_consumers",
    "publications_rate", "deliveries_rate", "commands_rate", "actor_restarts",
    "proxy_breakers_open", "reconnects_in_window", "reconnect_storm",
)

DEFAULT_RULES: tuple[str, ...] = (
    "loop_lag > 100ms for 30s",
    "open_files will exceed open_files_limit within 10m",
    # A proxy's backend is failing: its callers get error 100 at once (broker.proxy).
    "proxy_breaker_open: proxy_breakers_open > 0",
    # journeys.storm_threshold reconnects within journeys.storm_window (broker.journal).
    "reconnect_storm: reconnect_storm > 0",
)

MAX_TREND_WINDOW = 600.0
MIN_TREND_POINTS = 5

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
          "k": 1e3, "M": 1e6, "G": 1e9, "KiB": 1024.0, "MiB": 1024.0**2, "GiB": 1024.0**3}
_NUMBER = re.compile(r"^(-?\d+(?:\.\d*)?|-?\.\d+)(ns|us|ms|s|m|h|k|M|G|KiB|MiB|GiB)?$")
_DURATION_UNITS = ("ns", "us", "ms", "s", "m", "h")
_OPS = (">", ">=", "<", "<=")
_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")


class RuleError(ValueError):
    """A rule string that does not parse or names an unknown metric."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule. ``limit`` is a number or (``limit_metric``) another metric's value."""

    name: str
    metric: str
    kind: str  # "threshold" | "trend"
    op: str  # threshold: > >= < <= ; trend: ">" (will exceed) or "<" (will fall below)
    limit: float = 0.0
    limit_metric: str = ""
    hold: float = 0.0  # threshold: seconds the condition must hold
    horizon: float = 0.0  # trend: how far ahead to look
    window: float = 0.0  # trend: how much history to fit
    severity: str = "warning"
    text: str = ""

    def limit_in(self, sample: Mapping[str, float]) -> float | None:
        return sample.get(self.limit_metric) if self.limit_metric else self.limit


def _number(token: str, what: str, *, duration: bool = False) -> float:
    match = _NUMBER.match(token)
    if match is None or (duration and match.group(2) not in (None, *_DURATION_UNITS)):
        kind = "a duration such as 30s, 100ms or 10m" if duration else "a number"
        raise RuleError(f"{what}: expected {kind}, got {token!r}")
    value = float(match.group(1)) * _UNITS.get(match.group(2) or "", 1.0)
    if duration and value < 0:
        raise RuleError(f"{what}: a duration cannot be negative, got {token!r}")
    return value


def _metric(token: str, what: str) -> str:
    if token not in METRICS:
        raise RuleError(f"{what}: unknown metric {token!r} (known: {', '.join(METRICS)})")
    return token


def parse_rule(text: str) -> Rule:
    """Parse one rule string (grammar in the module docstring).

    Raises:
        RuleError: the string does not parse, or names an unknown metric.
    """
    name = ""
    head, sep, rest = text.partition(":")
    if sep and _NAME.match(head.strip()):
        name, text = head.strip(), rest
    words = text.split()
    severity = "warning"
    if len(words) >= 2 and words[-2] == "severity":
        severity, words = words[-1], words[:-2]
    if len(words) < 3:
        raise RuleError(f"expected '<metric> <op> <value> [for <duration>]' or "
                        f"'<metric> will exceed <limit> within <duration>', got {text.strip()!r}")
    metric = _metric(words[0], "metric")
    body = " ".join(words)
    if words[1] == "will":
        rule = _parse_trend(metric, words[2:], body)
    else:
        rule = _parse_threshold(metric, words[1:], body)
    return dataclasses.replace(rule, name=name or body, severity=severity, text=body)


def _limit(token: str) -> tuple[float, str]:
    if token in METRICS:
        return 0.0, token
    return _number(token, "limit"), ""


def _parse_threshold(metric: str, words: list[str], body: str) -> Rule:
    op = words[0]
    if op not in _OPS:
        raise RuleError(f"operator: expected one of {' '.join(_OPS)} or 'will', got {op!r}")
    limit, limit_metric = _limit(words[1])
    hold = 0.0
    tail = words[2:]
    if tail[:1] == ["for"] and len(tail) == 2:
        hold = _number(tail[1], "for", duration=True)
    elif tail:
        raise RuleError(f"unexpected {' '.join(tail)!r} (only 'for <duration>' may follow)")
    return Rule("", metric, "threshold", op, limit, limit_metric, hold=hold)


def _parse_trend(metric: str, words: list[str], body: str) -> Rule:
    if words[:1] == ["exceed"]:
        op, words = ">", words[1:]
    elif words[:2] == ["fall", "below"]:
        op, words = "<", words[2:]
    else:
        raise RuleError("trend: expected 'will exceed <limit>' or 'will fall below <limit>'")
    if len(words) < 3 or words[1] != "within":
        raise RuleError("trend: expected '<limit> within <duration> [window <duration>]'")
    limit, limit_metric = _limit(words[0])
    horizon = _number(words[2], "within", duration=True)
    window = min(horizon, MAX_TREND_WINDOW)
    tail = words[3:]
    if tail[:1] == ["window"] and len(tail) == 2:
        window = _number(tail[1], "window", duration=True)
    elif tail:
        raise RuleError(f"unexpected {' '.join(tail)!r} (only 'window <duration>' may follow)")
    if horizon <= 0 or window <= 0:
        raise RuleError("trend: 'within' and 'window' must be positive")
    return Rule("", metric, "trend", op, limit, limit_metric, horizon=horizon, window=window)


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    """Parse every rule; raises RuleError prefixed with ``[i]`` and rejects duplicate names."""
    rules: list[Rule] = []
    for i, text in enumerate(texts):
        try:
            rule = parse_rule(text)
        except RuleError as error:
            raise RuleError(f"[{i}]: {error}") from None
        if any(r.name == rule.name for r in rules):
            raise RuleError(f"[{i}]: duplicate rule name {rule.name!r}")
        rules.append(rule)
    return tuple(rules)


# --- series and regression -------------------------------------------------------------


class Series:
    """Recent ``(time, value)`` points of one metric, bounded by age and by count."""

    def __init__(self, max_age: float, maxlen: int = 4096) -> None:
        self.max_age = max_age
        self.points: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def add(self, t: float, value: float) -> None:
        points = self.points
        points.append((t, value))
        while points and points[0][0] < t - self.max_age:
            points.popleft()

    def since(self, t: float) -> list[tuple[float, float]]:
        return [p for p in self.points if p[0] >= t]


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of value over time; None if under-determined."""
    n = len(points)
    if n < 2:
        return None
    mean_t = sum(p[0] for p in points) / n
    mean_v = sum(p[1] for p in points) / n
    var_t = sum((p[0] - mean_t) ** 2 for p in points)
    if var_t == 0:
        return None
    slope = sum((p[0] - mean_t) * (p[1] - mean_v) for p in points) / var_t
    return slope, mean_v - slope * mean_t


def time_to_limit(points: list[tuple[float, float]], limit: float, op: str,
                  now: float) -> float | None:
    """Seconds from ``now`` until the fitted line crosses ``limit`` in direction ``op``.

    0 when the fitted value is already past the limit, None when the line never gets
    there (flat or heading away) or there are fewer than ``MIN_TREND_POINTS`` points.
    """
    if len(points) < MIN_TREND_POINTS:
        return None
    fit = fit_line(points)
    if fit is None:
        return None
    slope, intercept = fit
    current = slope * now + intercept
    if (op == ">" and current >= limit) or (op == "<" and current <= limit):
        return 0.0
    if (op == ">" and slope <= 0) or (op == "<" and slope >= 0):
        return None
    return (limit - current) / slope


# --- evaluation ------------------------------------------------------------------------


@dataclass(slots=True)
class Alert:
    """An active (firing) alert, or one that just resolved."""

    rule: Rule
    since: float  # unix seconds the alert started firing
    value: float
    message: str
    resolved_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.rule.name, "rule": self.rule.text, "kind": self.rule.kind,
                "metric": self.rule.metric, "severity": self.rule.severity,
                "since": self.since, "value": self.value, "message": self.message,
                "resolved_at": self.resolved_at,
                "state": "firing" if self.resolved_at is None else "resolved"}


def _compare(op: str, value: float, limit: float) -> bool:
    if op == ">":
        return value > limit
    if op == ">=":
        return value >= limit
    if op == "<":
        return value < limit
    return value <= limit


@dataclass(slots=True)
class _RuleState:
    """One rule's evaluation state: since when its condition holds, and its alert."""

    pending_since: float | None = None
    alert: Alert | None = None


@dataclass(slots=True)
class AlertEvaluator:
    """Evaluates rules over samples. ``observe`` returns the alerts that changed state."""

    rules: tuple[Rule, ...]
    history_limit: int = 100
    series: dict[str, Series] = field(default_factory=dict)
    states: dict[str, _RuleState] = field(default_factory=dict)
    recent: deque[Alert] = field(default_factory=deque)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self.states[rule.name] = _RuleState()
            if rule.kind == "trend":
                current = self.series.get(rule.metric)
                age = max(rule.window, current.max_age if current else 0.0)
                self.series[rule.metric] = Series(age)
        self.recent = deque(maxlen=self.history_limit)

    @property
    def active(self) -> list[Alert]:
        return [s.alert for s in self.states.values() if s.alert is not None]

    def observe(self, now: float, sample: Mapping[str, float]) -> list[Alert]:
        """Feed one sample taken at ``now`` (unix seconds); returns fired and resolved alerts."""
        for metric, series in self.series.items():
            value = sample.get(metric)
            if value is not None and math.isfinite(value):
                series.add(now, value)
        changed: list[Alert] = []
        for rule in self.rules:
            limit = rule.limit_in(sample)
            value = sample.get(rule.metric)
            if limit is None or value is None:
                continue
            if rule.kind == "threshold":
                alert = self._threshold(rule, now, value, limit)
            else:
                alert = self._trend(rule, now, value, limit)
            if alert is not None:
                changed.append(alert)
                self.recent.append(dataclasses.replace(alert))  # a snapshot: alerts mutate
        return changed

    def _threshold(self, rule: Rule, now: float, value: float, limit: float) -> Alert | None:
        state = self.states[rule.name]
        if not _compare(rule.op, value, limit):
            state.pending_since = None
            return self._resolve(state, now, value)
        if state.pending_since is None:
            state.pending_since = now
        if state.alert is None and now - state.pending_since >= rule.hold:
            held = f" for {now - state.pending_since:g}s" if rule.hold else ""
            message = f"{rule.metric} = {value:g} {rule.op} {limit:g}{held}"
            state.alert = Alert(rule, now, value, message)
            return state.alert
        if state.alert is not None:
            state.alert.value = value
        return None

    def _trend(self, rule: Rule, now: float, value: float, limit: float) -> Alert | None:
        state = self.states[rule.name]
        points = self.series[rule.metric].since(now - rule.window)
        eta = time_to_limit(points, limit, rule.op, now)
        if eta is None or eta > rule.horizon:
            return self._resolve(state, now, value)
        if state.alert is None:
            verb = "exceed" if rule.op == ">" else "fall below"
            message = (f"{rule.metric} = {value:g}, projected to {verb} {limit:g} "
                       f"in {eta:.0f}s (horizon {rule.horizon:g}s)")
            state.alert = Alert(rule, now, value, message)
            return state.alert
        state.alert.value = value
        return None

    @staticmethod
    def _resolve(state: _RuleState, now: float, value: float) -> Alert | None:
        alert, state.alert = state.alert, None
        if alert is None:
            return None
        alert.resolved_at = now
        alert.value = value
        return alert
