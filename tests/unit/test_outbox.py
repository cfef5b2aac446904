"""Outbox: coalescing, the shared pre-built frame, the byte bound (no sockets needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from broker.connection.outbox import FlushScheduler, Outbox, ws_frame, ws_header


class FakeTransport:
    """Records writes; ``buffered`` plays the kernel refusing to take more."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


def join_lines(frames: Sequence[bytes]) -> bytes:
    return b"\n".join(frames)


class FakeLoop:
    """Only what the scheduler uses: ``call_soon`` (recorded, run by the test)."""

    def __init__(self) -> None:
        self.soon: list[object] = []

    def call_soon(self, callback: object) -> None:
        self.soon.append(callback)


def make(max_bytes: int = 1000) -> tuple[Outbox, FakeTransport, list[str], FlushScheduler]:
    loop: Any = FakeLoop()
    transport = FakeTransport()
    overflows: list[str] = []
    scheduler = FlushScheduler(loop)
    outbox = Outbox(transport, scheduler, binary=False, join=join_lines,  # type: ignore[arg-type]
                    max_bytes=max_bytes, on_overflow=lambda: overflows.append("slow"))
    return outbox, transport, overflows, scheduler


def test_header_lengths() -> None:
    assert ws_header(5, False) == b"\x81\x05"
    assert ws_header(126, True)[:2] == b"\x82\x7e" and len(ws_header(126, True)) == 4
    assert ws_header(70000, False)[1] == 127 and len(ws_header(70000, False)) == 10


def test_frames_of_one_iteration_leave_in_one_write() -> None:
    outbox, transport, _, scheduler = make()
    for i in range(3):
        outbox.push(f'{{"n":{i}}}'.encode())
    scheduler.flush_all()
    assert transport.writes == [ws_frame(b'{"n":0}\n{"n":1}\n{"n":2}', False)]
    assert outbox.stats.frames == 3 and outbox.stats.writes == 1


def test_a_lone_frame_goes_out_as_the_shared_prebuilt_wire_bytes() -> None:
    outbox, transport, _, scheduler = make()
    wire = ws_frame(b"{}", False)
    outbox.push(b"{}", wire)
    scheduler.flush_all()
    assert transport.writes[0] is wire


def test_scheduler_marks_an_outbox_once_per_iteration() -> None:
    outbox, _, _, scheduler = make()
    outbox.push(b"a")
    outbox.push(b"b")
    assert len(scheduler._dirty) == 1
    assert len(scheduler._loop.soon) == 1  # type: ignore[attr-defined]


def test_overflow_of_queued_frames_closes_and_reports_once() -> None:
    outbox, transport, overflows, scheduler = make(max_bytes=10)
    outbox.push(b"x" * 8)
    outbox.push(b"x" * 8)
    outbox.push(b"x" * 8)
    scheduler.flush_all()
    assert overflows == ["slow"]
    assert outbox.closed and transport.writes == []


def test_overflow_of_the_transport_buffer_is_a_slow_consumer() -> None:
    outbox, transport, overflows, scheduler = make(max_bytes=100)
    transport.buffered = 500
    outbox.push(b"x")
    scheduler.flush_all()
    assert overflows == ["slow"]
    outbox.push(b"y")
    assert outbox.pending_bytes == 500  # nothing more is queued after closing


def test_closing_transport_drops_frames_without_writing() -> None:
    outbox, transport, _, scheduler = make()
    transport.closing = True
    outbox.push(b"x")
    scheduler.flush_all()
    assert transport.writes == []
