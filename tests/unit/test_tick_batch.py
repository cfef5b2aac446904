"""Tick batches: a channel's publications of one loop iteration reach each WebSocket
subscriber as one shared message, in order, never twice (no sockets needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from broker.connection.framing import WS_JSON, WS_PROTOBUF
from broker.connection.outbox import FlushScheduler, Outbox, ws_frame
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, encode_publication_push
from broker.shard.actor import Activate, Deliver, ShardActor, Subscribe
from broker.shard.state import ShardState
from broker.types import Publication
from tests.unit.test_outbox import FakeLoop, FakeTransport


def shard() -> tuple[ShardActor, FlushScheduler]:
    """A shard actor's delivery logic without a runtime: state, a node stand-in."""
    scheduler = FlushScheduler(FakeLoop())  # type: ignore[arg-type]
    actor = object.__new__(ShardActor)
    actor.index = 0
    actor.state = ShardState()
    actor.node = SimpleNamespace(scheduler=scheduler,  # type: ignore[assignment]
                                 metrics_delivered=lambda count, channel: None)
    actor._follow = lambda channel: None  # type: ignore[method-assign]
    return actor, scheduler


def subscriber(actor: ShardActor, scheduler: FlushScheduler, conn_id: str,
               binary: bool = False, live: bool = True) -> tuple[Outbox, FakeTransport]:
    transport = FakeTransport()
    codec = PROTOBUF_CODEC if binary else JSON_CODEC
    outbox = Outbox(transport, scheduler, binary=binary,  # type: ignore[arg-type]
                    join=codec.join, max_bytes=1 << 20, on_overflow=lambda: None)
    actor.receive(Subscribe("c", conn_id, outbox, WS_PROTOBUF if binary else WS_JSON, False))
    if live:
        actor.receive(Activate("c", conn_id, 0))
    return outbox, transport


def frame(n: int, binary: bool = False) -> bytes:
    codec = PROTOBUF_CODEC if binary else JSON_CODEC
    return encode_publication_push(codec, "c", Publication(b'{"n":%d}' % n))


def deliver(actor: ShardActor, *numbers: int) -> None:
    for n in numbers:
        actor.receive(Deliver("c", Publication(b'{"n":%d}' % n)))


def test_first_publication_of_a_tick_goes_out_at_once_the_rest_as_one_shared_message(
) -> None:
    actor, scheduler = shard()
    (box, a), (_, b) = subscriber(actor, scheduler, "a"), subscriber(actor, scheduler, "b")
    deliver(actor, 1, 2, 3)
    assert a.writes == b.writes == [ws_frame(frame(1), False)]
    assert a.writes[0] is b.writes[0]
    scheduler.end_tick()
    joined = ws_frame(frame(2) + b"\n" + frame(3), False)
    assert a.writes[1] == joined and a.writes[1] is b.writes[1]  # framed once for all
    stats = box.stats
    assert (stats.frames, stats.writes, stats.bytes) == (3, 2, len(a.writes[0]) + len(joined))
    assert scheduler.busy  # several frames per write: the next tick batches its first too


def test_in_a_burst_every_publication_of_the_tick_shares_one_write() -> None:
    actor, scheduler = shard()
    outbox, transport = subscriber(actor, scheduler, "a")
    _, binary = subscriber(actor, scheduler, "p", binary=True)
    scheduler.busy = True
    deliver(actor, 1, 2)
    assert transport.writes == [] and binary.writes == []
    scheduler.end_tick()
    assert transport.writes == [ws_frame(frame(1) + b"\n" + frame(2), False)]
    assert binary.writes == [ws_frame(frame(1, True) + frame(2, True), True)]
    assert outbox.stats.frames == 2 and outbox.stats.writes == 1
    scheduler.busy = False  # a quiet tick: only one publication, and it goes straight out
    scheduler.end_tick()
    deliver(actor, 3)
    assert transport.writes[-1] == ws_frame(frame(3), False)


def test_a_batch_lines_up_behind_frames_already_queued_in_an_outbox() -> None:
    actor, scheduler = shard()
    outbox, transport = subscriber(actor, scheduler, "a")
    outbox.push(b'{"reply":1}')  # straight out: the first write of the tick
    outbox.push(b'{"reply":2}')  # queued for the end of the tick
    deliver(actor, 1, 2)
    scheduler.end_tick()
    assert transport.writes[1] == ws_frame(
        b'{"reply":2}\n' + frame(1) + b"\n" + frame(2), False)
    assert len(transport.writes) == 2  # the outbox's queue and the batch in one write


def test_a_subscriber_going_live_mid_tick_gets_each_publication_once_in_order() -> None:
    actor, scheduler = shard()
    _, old = subscriber(actor, scheduler, "old")
    deliver(actor, 1, 2)  # 2 is batched
    _, new = subscriber(actor, scheduler, "new", live=False)
    deliver(actor, 3)  # batched; also buffered for the pending subscriber
    actor.receive(Activate("c", "new", 0))  # replays 3 to it, after the batch is out
    deliver(actor, 4)
    scheduler.end_tick()
    scheduler.end_tick()

    def pubs(transport: FakeTransport) -> list[int]:
        out: list[int] = []
        for wire in transport.writes:
            payload = wire[2:]
            out += [json.loads(reply["push"]["pub"]["data"])["n"]
                    for reply in JSON_CODEC.decode_replies(payload)]
        return out

    assert pubs(old) == [1, 2, 3, 4]
    assert pubs(new) == [3, 4]


def test_a_closed_member_is_skipped_and_the_others_still_get_the_batch() -> None:
    actor, scheduler = shard()
    gone, gone_transport = subscriber(actor, scheduler, "gone")
    _, kept = subscriber(actor, scheduler, "kept")
    scheduler.busy = True
    deliver(actor, 1, 2)
    gone.close()
    scheduler.end_tick()
    assert gone_transport.writes == [] and len(kept.writes) == 1


def test_a_subscriber_registered_live_gets_what_follows_as_if_activated() -> None:
    actor, scheduler = shard()
    _, old = subscriber(actor, scheduler, "old")
    deliver(actor, 1, 2)  # 2 is batched for "old"
    transport = FakeTransport()
    outbox = Outbox(transport, scheduler, binary=False,  # type: ignore[arg-type]
                    join=JSON_CODEC.join, max_bytes=1 << 20, on_overflow=lambda: None)
    actor.receive(Subscribe("c", "new", outbox, WS_JSON, False, live=True, after_offset=0))
    deliver(actor, 3)
    scheduler.end_tick()
    scheduler.end_tick()

    def pubs(transport: FakeTransport) -> list[int]:
        return [json.loads(reply["push"]["pub"]["data"])["n"] for wire in transport.writes
                for reply in JSON_CODEC.decode_replies(wire[2:])]

    assert pubs(old) == [1, 2, 3]
    assert pubs(transport) == [3]
    assert "new" not in actor.state.channels["c"].pending
