"""Outbox and WireOutbox: coalescing, the shared pre-built frame, the byte bound (no
sockets needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from broker.connection.framing import (
    SSE_JSON,
    STREAM_JSON,
    STREAM_PROTOBUF,
    UNI_WS,
    UNI_WS_JOINED,
    WS_JSON,
    WS_PROTOBUF,
)
from broker.connection.outbox import (
    FlushScheduler,
    Outbox,
    WireOutbox,
    broadcast,
    new_outbox,
    ws_frame,
    ws_header,
)


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


class TimedLoop(FakeLoop):
    """Records ``call_later`` delays too."""

    def __init__(self) -> None:
        super().__init__()
        self.later: list[float] = []

    def call_later(self, delay: float, callback: object) -> None:
        self.later.append(delay)
        self.soon.append(callback)


def test_burst_delay_waits_only_while_the_node_is_in_a_burst() -> None:
    loop: Any = TimedLoop()
    scheduler = FlushScheduler(loop, burst_delay=0.001)
    outbox = Outbox(FakeTransport(), scheduler, binary=False,  # type: ignore[arg-type]
                    join=join_lines, max_bytes=1000, on_overflow=lambda: None)
    outbox.push(b"1")  # outside a burst: written now, the tick ends at once
    outbox.push(b"2")
    outbox.push(b"3")
    assert loop.later == [] and len(loop.soon) == 1
    scheduler.end_tick()  # two frames coalesced: the node is in a burst
    assert scheduler.busy
    outbox.push(b"4")
    assert loop.later == [0.001]  # the tick waits for more of the burst
    scheduler.end_tick()  # one frame: the burst is over
    assert not scheduler.busy
    outbox.push(b"5")
    assert loop.later == [0.001] and len(loop.soon) == 3


def test_write_delay_holds_every_tick() -> None:
    loop: Any = TimedLoop()
    scheduler = FlushScheduler(loop, delay=0.02, burst_delay=0.001)
    transport = FakeTransport()
    outbox = Outbox(transport, scheduler, binary=False,  # type: ignore[arg-type]
                    join=join_lines, max_bytes=1000, on_overflow=lambda: None)
    for written in range(2):
        outbox.push(b"x")
        assert len(transport.writes) == written  # nothing goes straight through
        scheduler.end_tick()
        assert scheduler.busy
    assert loop.later == [0.02, 0.02] and len(transport.writes) == 2


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


def test_first_frame_of_a_tick_is_written_at_once() -> None:
    outbox, transport, _, _ = make()
    outbox.push(b'{"n":0}')
    assert transport.writes == [ws_frame(b'{"n":0}', False)]


def test_frames_after_the_first_in_a_tick_leave_in_one_write() -> None:
    outbox, transport, _, scheduler = make()
    for i in range(4):
        outbox.push(f'{{"n":{i}}}'.encode())
    assert len(transport.writes) == 1
    scheduler.end_tick()
    assert transport.writes[1] == ws_frame(b'{"n":1}\n{"n":2}\n{"n":3}', False)
    assert outbox.stats.frames == 4 and outbox.stats.writes == 2


def test_a_new_tick_writes_through_again() -> None:
    outbox, transport, _, scheduler = make()
    outbox.push(b"a")
    scheduler.end_tick()
    outbox.push(b"b")
    assert transport.writes == [ws_frame(b"a", False), ws_frame(b"b", False)]


def test_a_broadcast_frame_goes_out_as_the_shared_prebuilt_wire_bytes() -> None:
    outbox, transport, _, scheduler = make()
    wire = ws_frame(b"{}", False)
    outbox.push(b"{}", wire)
    assert transport.writes[0] is wire
    scheduler.end_tick()
    outbox.push(b"x")  # queued behind nothing: written through again
    queued_wire = ws_frame(b"{}", False)
    outbox.push(b"{}", queued_wire)
    scheduler.end_tick()
    assert transport.writes[-1] is queued_wire


def test_one_call_soon_per_tick_for_the_whole_node() -> None:
    outbox, _, _, scheduler = make()
    other = Outbox(outbox._transport, scheduler, binary=False, join=join_lines,
                   max_bytes=100, on_overflow=lambda: None)
    for box in (outbox, other, outbox, other):
        box.push(b"a")
    assert len(scheduler._loop.soon) == 1  # type: ignore[attr-defined]
    assert len(scheduler._dirty) == 2


def test_overflow_of_queued_frames_closes_and_reports_once() -> None:
    outbox, transport, overflows, scheduler = make(max_bytes=10)
    for _ in range(4):
        outbox.push(b"x" * 8)
    scheduler.end_tick()
    assert overflows == ["slow"]
    assert outbox.closed and len(transport.writes) == 1


def test_overflow_of_the_transport_buffer_is_a_slow_consumer() -> None:
    outbox, transport, overflows, _ = make(max_bytes=100)
    transport.buffered = 500
    outbox.push(b"x")
    assert overflows == ["slow"]
    outbox.push(b"y")
    assert len(transport.writes) == 1  # nothing more is written after closing


def test_closing_transport_drops_frames_without_writing() -> None:
    outbox, transport, _, _ = make()
    transport.closing = True
    outbox.push(b"x")
    assert transport.writes == []


def test_after_a_coalescing_tick_the_first_frame_waits_too() -> None:
    outbox, transport, _, scheduler = make()
    outbox.push(b"a")
    outbox.push(b"b")
    outbox.push(b"c")
    scheduler.end_tick()  # b and c coalesced: the node is in a burst
    assert scheduler.busy
    outbox.push(b"d")
    assert len(transport.writes) == 2  # d waits for the end of the tick
    outbox.push(b"e")
    scheduler.end_tick()
    assert transport.writes[-1] == ws_frame(b"d\ne", False)
    outbox.push(b"f")  # still busy after another coalesced tick
    scheduler.end_tick()
    assert not scheduler.busy  # one frame per outbox: the burst is over
    assert transport.writes[-1] == ws_frame(b"f", False)
    scheduler.end_tick()
    outbox.push(b"g")  # written through again
    assert transport.writes[-1] == ws_frame(b"g", False)


def test_broadcast_writes_the_shared_bytes_and_keeps_every_outbox_rule() -> None:
    """``broadcast``: the shard's paced loop, one write of the shared wire per outbox;
    an outbox that already wrote this tick queues instead, a closed one drops it, a
    closing transport gets nothing, and a backlog past the bound is a slow consumer."""
    fresh, transport, _, scheduler = make()
    wrote = Outbox(FakeTransport(), scheduler, binary=False, join=join_lines,  # type: ignore[arg-type]
                   max_bytes=1000, on_overflow=lambda: None)
    wrote.push(b"reply")  # its first write of the tick
    closed = Outbox(FakeTransport(), scheduler, binary=False, join=join_lines,  # type: ignore[arg-type]
                    max_bytes=1000, on_overflow=lambda: None)
    closed.close()
    closing_transport = FakeTransport()
    closing_transport.closing = True
    closing = Outbox(closing_transport, scheduler, binary=False, join=join_lines,  # type: ignore[arg-type]
                     max_bytes=1000, on_overflow=lambda: None)
    slow_transport, overflows = FakeTransport(), []
    slow_transport.buffered = 5000
    slow = Outbox(slow_transport, scheduler, binary=False, join=join_lines,  # type: ignore[arg-type]
                  max_bytes=1000, on_overflow=lambda: overflows.append("slow"))
    wire = ws_frame(b"{}", False)
    broadcast([fresh, wrote, closed, closing, slow], b"{}", wire, scheduler.tick)
    assert transport.writes == [wire] and transport.writes[0] is wire
    assert fresh.stats.frames == fresh.stats.writes == 1 and fresh.stats.bytes == len(wire)
    assert closing_transport.writes == [] and overflows == ["slow"] and slow.closed
    scheduler.end_tick()
    assert wrote._transport.writes[-1] == ws_frame(b"{}", False)  # type: ignore[attr-defined]
    assert closed.stats.writes == 0


def make_wire(max_bytes: int = 1000) -> tuple[Outbox, FakeTransport, list[str], FlushScheduler]:
    loop: Any = FakeLoop()
    transport = FakeTransport()
    overflows: list[str] = []
    scheduler = FlushScheduler(loop)
    outbox = new_outbox(transport, scheduler,  # type: ignore[arg-type]
                        framing=UNI_WS.framing, binary=False, join=join_lines,
                        max_bytes=max_bytes, on_overflow=lambda: overflows.append("slow"))
    return outbox, transport, overflows, scheduler


def test_a_message_per_frame_outbox_joins_the_shared_wires_in_one_write() -> None:
    outbox, transport, _, scheduler = make_wire()
    assert isinstance(outbox, WireOutbox)
    wires = [ws_frame(b'{"n":%d}' % n, False) for n in range(4)]
    for n, wire in enumerate(wires):
        outbox.push(b'{"n":%d}' % n, wire)
    assert transport.writes == [wires[0]] and transport.writes[0] is wires[0]
    assert all(queued is wire for queued, wire in zip(outbox._frames, wires[1:], strict=True))
    scheduler.end_tick()
    # one write: three complete WebSocket messages back to back, as many() frames them
    assert transport.writes[1] == b"".join(wires[1:]) == UNI_WS.framing.many(
        [b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    assert outbox.stats.frames == 4 and outbox.stats.writes == 2


def test_a_wire_outbox_frames_a_reply_itself_and_keeps_the_order() -> None:
    outbox, transport, _, scheduler = make_wire()
    outbox.push(b"a")
    outbox.push(b"b")  # a reply: no wire given
    shared = ws_frame(b"c", False)
    outbox.push(b"c", shared)
    scheduler.end_tick()
    assert transport.writes == [ws_frame(b"a", False),
                                ws_frame(b"b", False) + ws_frame(b"c", False)]
    scheduler.end_tick()  # a quiet tick ends the burst
    outbox.push(b"d", ws_frame(b"d", False))  # then the first frame goes out at once
    assert transport.writes[-1] == ws_frame(b"d", False)


def test_a_wire_outbox_in_a_busy_tick_sends_a_lone_wire_untouched() -> None:
    outbox, transport, _, scheduler = make_wire()
    scheduler.busy = True  # a burst: even the first frame of the tick waits
    shared = ws_frame(b"x", False)
    outbox.push(b"x", shared)
    assert transport.writes == []
    scheduler.end_tick()
    assert transport.writes[0] is shared


def test_a_wire_outbox_overflows_on_queued_bytes() -> None:
    outbox, transport, overflows, scheduler = make_wire(max_bytes=25)
    for _ in range(4):
        outbox.push(b"x" * 8)  # 10 wire bytes each
    scheduler.end_tick()
    assert overflows == ["slow"]
    assert outbox.closed and len(transport.writes) == 1


def test_framings_that_join_frames_into_one_message_keep_the_frame_outbox() -> None:
    loop: Any = FakeLoop()
    for framing in (WS_JSON.framing, WS_PROTOBUF.framing, UNI_WS_JOINED.framing):
        outbox = new_outbox(FakeTransport(), FlushScheduler(loop),  # type: ignore[arg-type]
                            framing=framing, binary=False, join=join_lines, max_bytes=10,
                            on_overflow=lambda: None)
        assert type(outbox) is Outbox
    for framing in (UNI_WS.framing, SSE_JSON.framing, STREAM_JSON.framing,
                    STREAM_PROTOBUF.framing):
        outbox = new_outbox(FakeTransport(), FlushScheduler(loop),  # type: ignore[arg-type]
                            framing=framing, binary=False, join=join_lines, max_bytes=10,
                            on_overflow=lambda: None)
        assert type(outbox) is WireOutbox
