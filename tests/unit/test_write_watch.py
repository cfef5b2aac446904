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


def ticks(watch: WriteWatch, clock: Clock, seconds: float) -> None:
    """Run the watch on time (every ``resolution``) for ``seconds``."""
    for _ in range(round(seconds / watch.resolution)):
        clock.now += watch.resolution
        watch.tick()


def test_bytes_stuck_for_the_timeout_close_the_outbox_once() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    assert outbox.watched and len(watch) == 1
    ticks(watch, clock, 0.75)
    assert events == []
    ticks(watch, clock, 0.25)
    assert events == ["write timeout"] and outbox.closed and len(watch) == 0
    ticks(watch, clock, 0.25)
    assert events == ["write timeout"] and watch.timeouts == 1


def test_a_stalled_loop_does_not_count_against_the_socket() -> None:
    """The transport drains only when the loop polls it: five seconds in which the
    loop ran something else (the timer fired late) are not five seconds of waiting."""
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    clock.now += 5.0
    watch.tick()  # 4.75 s late: only the 0.25 s of one period count
    assert events == []
    ticks(watch, clock, 0.5)
    assert events == []
    ticks(watch, clock, 0.25)
    assert events == ["write timeout"]


def test_progress_moves_the_deadline() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    for _ in range(5):  # a slow reader: the kernel takes what was marked, more arrives
        ticks(watch, clock, 0.75)
        transport.buffered = 0
        ticks(watch, clock, 0.25)  # empty: unwatched
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
    ticks(watch, clock, 0.5)
    transport.buffered = 10  # 92 bytes reached the kernel, not yet all 102 marked
    ticks(watch, clock, 0.5)
    assert events == ["write timeout"]


def test_an_outbox_closed_otherwise_is_dropped_silently() -> None:
    watch, clock, outbox, transport, events = make(timeout=1.0)
    transport.buffered = 50
    outbox.push(b"x" * 100)
    outbox.close()
    ticks(watch, clock, 5.0)
    assert events == [] and len(watch) == 0
