"""Alert rules on synthetic series: parsing, thresholds held for a duration, trends."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from broker.config import ConfigError, config_from_mapping
from broker.monitor.alerts import (
    AlertEvaluator,
    RuleError,
    fit_line,
    parse_rule,
    parse_rules,
    time_to_limit,
)


def run(evaluator: AlertEvaluator, metric: str, series: Sequence[tuple[float, float]],
        **extra: float) -> list[tuple[float, str]]:
    """Feed ``(t, value)`` points; return (t, "fired"/"resolved") for each change."""
    changes = []
    for t, value in series:
        for alert in evaluator.observe(t, {metric: value, **extra}):
            changes.append((t, "resolved" if alert.resolved_at is not None else "fired"))
    return changes


# --- parsing -------------------------------------------------------------------------------


def test_threshold_rule_parses_units_and_hold() -> None:
    rule = parse_rule("loop_lag > 100ms for 30s")
    assert (rule.kind, rule.metric, rule.op, rule.limit, rule.hold) == (
        "threshold", "loop_lag", ">", pytest.approx(0.1), 30.0)
    assert rule.name == "loop_lag > 100ms for 30s"
    assert rule.severity == "warning"


def test_named_rule_with_severity_and_size_units() -> None:
    rule = parse_rule("high_rss: rss_bytes >= 2GiB for 1m severity critical")
    assert (rule.name, rule.limit, rule.hold, rule.severity) == (
        "high_rss", 2 * 1024**3, 60.0, "critical")


def test_trend_rule_parses_limit_metric_horizon_and_window() -> None:
    rule = parse_rule("open_files will exceed open_files_limit within 10m window 2m")
    assert (rule.kind, rule.op, rule.limit_metric, rule.horizon, rule.window) == (
        "trend", ">", "open_files_limit", 600.0, 120.0)
    falling = parse_rule("connections will fall below 10 within 1h")
    assert (falling.op, falling.limit, falling.window) == ("<", 10.0, 600.0)


@pytest.mark.parametrize("text, message", [
    ("nonsense", "expected"),
    ("cpu > 1", "unknown metric 'cpu'"),
    ("loop_lag ~ 1", "operator"),
    ("loop_lag > 1 for 5 parsecs", "unexpected"),
    ("loop_lag > 1 for 1x", "duration"),
    ("loop_lag > fast", "expected a number"),
    ("connections will explode 5 within 1m", "will exceed"),
    ("connections will exceed 5 in 1m", "within"),
])
def test_bad_rules_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(text)


def test_duplicate_rule_names_are_rejected_with_index() -> None:
    with pytest.raises(RuleError, match=r"\[1\]: duplicate"):
        parse_rules(["a: loop_lag > 1", "a: connections > 1"])


def test_config_reports_bad_rule_with_key_path() -> None:
    base = {"http_api": {"insecure": True}, "client": {"insecure": True}}
    with pytest.raises(ConfigError, match=r"^monitor\.alerts\[1\]: metric: unknown metric"):
        config_from_mapping({**base, "monitor": {"alerts": ["loop_lag > 1", "cpu > 1"]}})
    with pytest.raises(ConfigError, match=r"^monitor\.webhook_url"):
        config_from_mapping({**base, "monitor": {"webhook_url": "ftp://x"}})
    config = config_from_mapping(base)
    assert [r.kind for r in config.monitor.rules] == [  # the defaults
        "threshold", "trend", "threshold", "threshold"]


# --- thresholds ------------------------------------------------------------------------------


def test_threshold_fires_only_after_holding_for_the_duration() -> None:
    evaluator = AlertEvaluator(parse_rules(["loop_lag > 100ms for 30s"]))
    series = [(t, 0.2) for t in range(0, 45, 5)]
    assert run(evaluator, "loop_lag", series) == [(30, "fired")]
    assert [a.rule.metric for a in evaluator.active] == ["loop_lag"]
    assert "0.2 > 0.1 for 30s" in evaluator.active[0].message


def test_threshold_dip_restarts_the_hold_and_resolves() -> None:
    evaluator = AlertEvaluator(parse_rules(["loop_lag > 100ms for 10s"]))
    series = [(0, 0.2), (5, 0.2), (8, 0.05), (10, 0.2), (15, 0.2), (20, 0.2), (25, 0.01)]
    assert run(evaluator, "loop_lag", series) == [(20, "fired"), (25, "resolved")]
    assert evaluator.active == []
    assert [a.resolved_at is None for a in evaluator.recent] == [True, False]


def test_threshold_without_hold_fires_at_once_and_limit_may_be_a_metric() -> None:
    evaluator = AlertEvaluator(parse_rules(["open_files >= open_files_limit"]))
    changes = run(evaluator, "open_files", [(0, 10), (1, 100)], open_files_limit=100)
    assert changes == [(1, "fired")]


def test_missing_metric_leaves_rule_state_unchanged() -> None:
    evaluator = AlertEvaluator(parse_rules(["connections > 5"]))
    assert len(evaluator.observe(0, {"connections": 9})) == 1
    assert evaluator.observe(1, {"loop_lag": 0.0}) == []
    assert len(evaluator.active) == 1


# --- trends ----------------------------------------------------------------------------------


def test_fit_line_recovers_slope_and_intercept() -> None:
    slope, intercept = fit_line([(t, 3.0 * t + 7.0) for t in range(10)]) or (0, 0)
    assert slope == pytest.approx(3.0)
    assert intercept == pytest.approx(7.0)
    assert fit_line([(1.0, 1.0), (1.0, 2.0)]) is None


def test_time_to_limit_projects_the_crossing() -> None:
    points = [(float(t), 100.0 + 2.0 * t) for t in range(10)]  # 2 per second
    assert time_to_limit(points, 200.0, ">", now=9.0) == pytest.approx(41.0)
    assert time_to_limit(points, 50.0, "<", now=9.0) is None  # heading away
    assert time_to_limit(points, 110.0, ">", now=9.0) == 0.0  # already past
    assert time_to_limit(points[:3], 200.0, ">", now=2.0) is None  # too few points


def test_trend_fires_when_limit_is_within_horizon() -> None:
    # 10 files/s from 1000 toward a limit of 20000: crossing ~1900 s ahead at first.
    evaluator = AlertEvaluator(parse_rules(
        ["open_files will exceed open_files_limit within 10m window 1m"]))
    series = [(float(t), 1000.0 + 10.0 * t) for t in range(0, 1400, 10)]
    changes = run(evaluator, "open_files", series, open_files_limit=20000)
    assert len(changes) == 1 and changes[0][1] == "fired"
    fired_at = changes[0][0]
    eta = (20000 - (1000 + 10 * fired_at)) / 10
    assert 590 <= eta <= 600, "fires as soon as the crossing is within the 10 minute horizon"
    assert "projected to exceed 20000" in evaluator.active[0].message


def test_trend_stays_quiet_on_a_flat_or_noisy_series_and_resolves_when_it_levels() -> None:
    evaluator = AlertEvaluator(parse_rules(["connections will exceed 1000 within 5m window 1m"]))
    flat = [(float(t), 500.0 + (7 if t % 2 else -7)) for t in range(0, 300, 5)]
    assert run(evaluator, "connections", flat) == []
    rising = [(300.0 + t, 500.0 + 3.0 * t) for t in range(0, 60, 5)]  # 3/s: 1000 in ~2.5 min
    changes = run(evaluator, "connections", rising)
    assert [c[1] for c in changes] == ["fired"]
    assert changes[0][0] <= 330, "a minute-long window notices the climb within half a minute"
    level = [(360.0 + t, 680.0) for t in range(0, 400, 5)]
    changes = run(evaluator, "connections", level)
    assert changes and changes[0][1] == "resolved"
    assert evaluator.active == []


def test_trend_falling_rule() -> None:
    evaluator = AlertEvaluator(parse_rules(["connections will fall below 100 within 1m"]))
    series = [(float(t), 1000.0 - 20.0 * t) for t in range(0, 20)]
    changes = run(evaluator, "connections", series)
    assert changes and changes[0][1] == "fired"
    # fired once the line is within 60 s of 100: 1000 - 20 t <= 100 + 20 * 60
    assert changes[0][0] >= 4  # needs MIN_TREND_POINTS samples first
