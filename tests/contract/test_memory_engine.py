"""MemoryEngine specifics beyond the shared contract: sweeping, statistics, lifecycle."""

from __future__ import annotations

import pytest

from broker.engine.base import EngineError
from broker.engine.memory import MemoryEngine
from broker.types import ClientInfo, Publication, StreamPosition
from tests.contract.helpers import eventually


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exploding(*args: object) -> None:
    raise AssertionError(f"memory engine called a handler with {args}")


async def test_never_calls_handlers() -> None:
    engine = MemoryEngine()
    engine.set_handlers(exploding, exploding, exploding, exploding)
    await engine.start()
    try:
        await engine.subscribe("ch")
        await engine.publish("ch", b"1", history_size=1, history_ttl=1)
        await engine.publish_join("ch", ClientInfo("u", "c"))
        await engine.publish_control(b"x")
    finally:
        await engine.close()


async def test_sweeper_frees_expired_state() -> None:
    clock = ManualClock()
    engine = MemoryEngine(history_meta_ttl=100, sweep_interval=0.01, clock=clock)
    await engine.start()
    try:
        await engine.publish("ch", b"12345", history_size=5, history_ttl=10)
        await engine.add_presence("ch", "c", ClientInfo("u", "c"), 10)
        await engine.publish("ch", b"1", idempotency_key="k", idempotent_ttl=10)
        stats = engine.statistics()
        assert (stats.history.publications, stats.history.bytes) == (1, 5)
        assert (stats.presence.clients, stats.idempotency_results) == (1, 1)
        clock.now += 10
        await eventually(lambda: engine.statistics().history.bytes == 0)
        stats = engine.statistics()
        assert (stats.history.streams, stats.presence.clients, stats.idempotency_results) == (
            1,
            0,
            0,
        )
        clock.now += 100
        await eventually(lambda: engine.statistics().history.streams == 0)
    finally:
        await engine.close()


async def test_sweep_failure_is_logged_and_sweeping_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = MemoryEngine(sweep_interval=0.01)
    calls = 0
    real_sweep = engine.sweep

    def flaky_sweep() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return real_sweep()

    engine.sweep = flaky_sweep  # type: ignore[method-assign]
    await engine.start()
    try:
        await eventually(lambda: calls >= 2)
        assert "memory engine sweep failed" in caplog.text
    finally:
        await engine.close()


async def test_start_after_close_raises_and_close_stops_sweeper() -> None:
    engine = MemoryEngine()
    await engine.start()
    await engine.start()  # idempotent
    sweeper = engine._sweeper
    await engine.close()
    assert sweeper is not None and sweeper.cancelled()
    with pytest.raises(EngineError):
        await engine.start()


async def test_subscriptions_are_counted() -> None:
    engine = MemoryEngine()
    await engine.subscribe("a")
    await engine.subscribe("b")
    await engine.unsubscribe("a")
    assert engine.statistics().subscribed_channels == 1


async def test_publish_returns_stored_publication_and_position() -> None:
    engine = MemoryEngine()
    pub, pos = await engine.publish("ch", b"1", tags={"a": "b"}, history_size=2, history_ttl=5)
    assert isinstance(pub, Publication) and pub.tags == {"a": "b"}
    assert pos == StreamPosition(1, pos.epoch)


def test_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="history_meta_ttl"):
        MemoryEngine(history_meta_ttl=0)
    with pytest.raises(ValueError, match="sweep_interval"):
        MemoryEngine(sweep_interval=0)
