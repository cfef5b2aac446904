"""The circuit breaker's states, driven by a hand-moved clock (no loop, no I/O)."""

from __future__ import annotations

import pytest

from broker.proxy.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, open_time: float = 5.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures, open_time, clock), clock


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    b, _ = breaker()
    for _ in range(2):
        assert b.allow() == (True, False)
        b.failure(False)
    b.success(False)
    for _ in range(2):
        b.failure(False)
    assert b.state == CLOSED
    b.failure(False)
    assert b.state == OPEN and b.opens == 1
    assert b.allow() == (False, False)


def test_after_open_time_exactly_one_probe_goes_through() -> None:
    b, clock = breaker(failures=1)
    b.failure(False)
    clock.now += 4.9
    assert b.allow() == (False, False) and b.seconds_until_probe() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.state == HALF_OPEN
    assert b.allow() == (True, True)
    assert b.allow() == (False, False)  # one probe at a time


def test_the_probe_decides() -> None:
    b, clock = breaker(failures=1)
    b.failure(False)
    clock.now += 5
    _, probe = b.allow()
    b.failure(probe)
    assert b.state == OPEN and b.opens == 2
    clock.now += 5
    _, probe = b.allow()
    b.success(probe)
    assert b.state == CLOSED and b.allow() == (True, False)


def test_late_outcomes_of_calls_from_before_do_not_decide() -> None:
    b, clock = breaker(failures=1)
    b.failure(False)
    b.success(False)  # a call let through before it opened, answering late
    assert b.state == OPEN
    clock.now += 5
    _, probe = b.allow()
    b.failure(False)  # another old call
    assert b.state == HALF_OPEN
    b.success(probe)
    assert b.state == CLOSED


def test_an_abandoned_probe_frees_the_slot() -> None:
    b, clock = breaker(failures=1)
    b.failure(False)
    clock.now += 5
    _, probe = b.allow()
    b.abandon(probe)
    assert b.allow() == (True, True)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0)
