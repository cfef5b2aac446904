"""The admin login throttle as plain state: failures per address, sliding window, LRU cap."""

from __future__ import annotations

import pytest

from broker.admin.throttle import LoginThrottle


def fail(throttle: LoginThrottle, address: str, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        throttle.failed(address, now)


def test_five_failures_within_the_window_block_until_the_oldest_expires() -> None:
    throttle = LoginThrottle(max_failures=5, window=60.0)
    for i in range(4):
        throttle.failed("10.0.0.1", float(i))
        assert throttle.retry_after("10.0.0.1", float(i)) == 0.0
    throttle.failed("10.0.0.1", 10.0)
    assert throttle.retry_after("10.0.0.1", 10.0) == 50.0  # the first failure was at 0
    assert throttle.retry_after("10.0.0.1", 59.5) == pytest.approx(0.5)
    assert throttle.retry_after("10.0.0.1", 60.0) == 0.0  # one try back, not five
    throttle.failed("10.0.0.1", 60.0)
    assert throttle.retry_after("10.0.0.1", 60.0) == pytest.approx(1.0)  # failure at 1 s


def test_failures_older_than_the_window_do_not_count() -> None:
    throttle = LoginThrottle(max_failures=3, window=10.0)
    fail(throttle, "a", 2, now=0.0)
    fail(throttle, "a", 2, now=20.0)  # the first two have expired: two in the window
    assert throttle.retry_after("a", 20.0) == 0.0
    assert throttle.retry_after("a", 31.0) == 0.0
    assert len(throttle) == 0  # an address whose failures all expired is forgotten


def test_success_clears_the_address_and_addresses_are_separate() -> None:
    throttle = LoginThrottle(max_failures=2, window=60.0)
    fail(throttle, "a", 2)
    fail(throttle, "b", 1)
    assert throttle.retry_after("a", 1.0) > 0
    assert throttle.retry_after("b", 1.0) == 0.0
    throttle.succeeded("a")
    assert throttle.retry_after("a", 1.0) == 0.0
    throttle.failed("a", 1.0)
    assert throttle.retry_after("a", 1.0) == 0.0  # counting starts again from zero


def test_the_table_is_bounded_and_forgets_the_least_recent_address() -> None:
    throttle = LoginThrottle(max_failures=2, window=60.0, capacity=3)
    fail(throttle, "old", 2)
    for i in range(3):
        throttle.failed(f"flood-{i}", 1.0)
        assert len(throttle) <= 3
    assert throttle.retry_after("old", 1.0) == 0.0  # evicted by the flood
    assert len(throttle) == 3
    fail(throttle, "kept", 2, now=2.0)
    throttle.failed("flood-1", 3.0)  # touched: now the most recent
    throttle.failed("new", 3.0)  # evicts flood-2, the least recently failing
    assert throttle.retry_after("kept", 3.0) > 0
    assert throttle.retry_after("flood-1", 3.0) > 0
    assert len(throttle) == 3


def test_each_address_keeps_at_most_max_failures_timestamps() -> None:
    throttle = LoginThrottle(max_failures=5, window=60.0)
    fail(throttle, "a", 1000)
    assert len(throttle._failures["a"]) == 5


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window": 0.0}, {"capacity": 0}])
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(**kwargs)  # type: ignore[arg-type]
