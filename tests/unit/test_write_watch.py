"""WriteWatch (``websocket.write_timeout``) over real Outboxes on fake transports: who is
watched, when a stuck socket times out, and that progress or an emptied buffer spare it."""

from __future__ import annotations

from typing import Any

from broker.connection.outbox import FlushScheduler, Outbox
from broker.connection.writewatch import WriteWatch
from tests.unit.test_outbox import FakeLoop, FakeTransport, join_lines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(timeout: float = 1.0) -> tuple[WriteWatch, Clock, Outbox, FakeTransport, list[str]]:
    clock = Clock()
    watch = WriteWatch(timeout, clock)
    transport = FakeTransport()
    events: list[str] = []
    loop: Any = FakeLoop()
    scheduler = FlushScheduler(loop)
    outbox = Outbox(transport, scheduler, binary=False,  # type: ignore[arg-type]
                    join=join_lines, max_bytes=10_000,
                    on_overflow=lambda: events.append("slow"), watch=watch,
                    on_write_timeout=lambda: events.append("write timeout"))
    return watch, clock, outbox, transport, events


def test_a_write_the_kernel_took_whole_is_not_watched() -> None:
    watch, _, outbox, _, _ = make()
    outbox.push(b"x" * 100)
    assert len(watch) == 0 and not outbox.watched


def test_bytes_stuck_for_the_timeout_close_the_outbox_once() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    assert outbox.watched and len(watch) == 1
    clock.now += 0.9
    watch.tick()
    assert events == []
    clock.now += 0.1
    watch.tick()
    assert events == ["write timeout"] and outbox.closed and len(watch) == 0
    watch.tick()
    assert events == ["write timeout"] and watch.timeouts == 1


def test_progress_moves_the_deadline() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    for _ in range(5):  # a slow reader: the kernel takes what was marked, more arrives
        clock.now += 0.8
        transport.buffered = 0
        watch.tick()  # empty: unwatched
        assert not outbox.watched
        outbox._scheduler.end_tick()  # a new loop tick: the next push writes at once
        transport.buffered = 50
        outbox.push(b"y" * 100)
        assert outbox.watched
    assert events == []


def test_partial_progress_counts_only_when_all_marked_bytes_left() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 90
    outbox.push(b"x" * 100)  # 102 bytes on the wire, 90 of them still waiting
    clock.now += 0.5
    transport.buffered = 10  # 92 bytes reached the kernel, not yet all 102 marked
    watch.tick()
    clock.now += 0.5
    watch.tick()
    assert events == ["write timeout"]


def test_an_outbox_closed_otherwise_is_dropped_silently() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    outbox.close()
    clock.now += 5
    watch.tick()
    assert events == [] and len(watch) == 0
