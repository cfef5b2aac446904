"""Tick batches of concatenating groups (Pusher, SSE ...): a channel's events of one
loop iteration reach every member as the same bytes in one write, each event still its
own WebSocket message, in order, never twice, never to the socket they skip (no
sockets needed)."""

from __future__ import annotations

import json

from broker.connection.framing import SSE_JSON, Delivery
from broker.connection.outbox import FlushScheduler, Outbox, new_outbox, ws_frame
from broker.pusher.codec import PUSHER_CODEC, PUSHER_WS
from broker.shard.actor import SKIP_TAG, Activate, Deliver, ShardActor, Subscribe
from broker.types import Publication
from tests.unit.test_outbox import FakeTransport
from tests.unit.test_tick_batch import shard


def member(actor: ShardActor, scheduler: FlushScheduler, conn_id: str,
           delivery: Delivery = PUSHER_WS, live: bool = True, max_bytes: int = 1 << 20,
           overflows: list[str] | None = None) -> tuple[Outbox, FakeTransport]:
    transport = FakeTransport()
    sink = overflows if overflows is not None else []
    outbox = new_outbox(transport, scheduler,  # type: ignore[arg-type]
                        framing=delivery.framing, binary=False, join=delivery.codec.join,
                        max_bytes=max_bytes,
                        on_overflow=lambda: sink.append(conn_id))
    actor.receive(Subscribe("c", conn_id, outbox, delivery, False))
    if live:
        actor.receive(Activate("c", conn_id, 0))
    return outbox, transport


def pub(n: int, skip: str | None = None) -> Publication:
    return Publication(b'{"n":%d}' % n, tags={SKIP_TAG: skip} if skip else None)


def wire(n: int) -> bytes:
    return ws_frame(PUSHER_CODEC.encode_publication_push("c", pub(n)), False)


def deliver(actor: ShardActor, *pubs: Publication) -> None:
    for publication in pubs:
        actor.receive(Deliver("c", publication))


def numbers(transport: FakeTransport) -> list[int]:
    """The events a client read, one JSON event per WebSocket message (as pusher-js)."""
    out: list[int] = []
    for data in transport.writes:
        while data:
            assert data[0] == 0x81 and data[1] < 126  # one final text frame each
            end = 2 + data[1]
            out.append(json.loads(data[2:end])["data"]["n"])
            data = data[end:]
    return out


def test_first_event_goes_out_at_once_the_rest_as_one_shared_write() -> None:
    actor, scheduler = shard()
    (box, a), (_, b) = member(actor, scheduler, "a"), member(actor, scheduler, "b")
    deliver(actor, pub(1), pub(2), pub(3))
    assert a.writes == b.writes == [wire(1)] and a.writes[0] is b.writes[0]
    scheduler.end_tick()
    assert a.writes[1] == wire(2) + wire(3)  # each event its own message ...
    assert a.writes[1] is b.writes[1]  # ... joined once for every member
    stats = box.stats
    assert (stats.frames, stats.writes) == (3, 2)
    assert scheduler.busy  # the next tick batches its first event too
    deliver(actor, pub(4))
    assert len(a.writes) == 2
    scheduler.end_tick()
    assert a.writes[2] == wire(4) and a.writes[2] is b.writes[2]


def test_a_batch_lines_up_behind_frames_already_queued_in_an_outbox() -> None:
    actor, scheduler = shard()
    outbox, transport = member(actor, scheduler, "a")
    outbox.push(b'{"event":"reply","data":{"n":-1}}')  # straight out
    outbox.push(b'{"event":"reply","data":{"n":0}}')  # queued for the end of the tick
    deliver(actor, pub(1), pub(2))
    scheduler.end_tick()
    assert len(transport.writes) == 2  # the queue and the batch in one write, in order
    assert numbers(transport) == [-1, 0, 1, 2]


def test_a_member_going_live_mid_tick_gets_each_event_once_in_order() -> None:
    actor, scheduler = shard()
    _, old = member(actor, scheduler, "old")
    deliver(actor, pub(1), pub(2))  # 2 is batched
    _, new = member(actor, scheduler, "new", live=False)
    deliver(actor, pub(3))  # batched; also buffered for the pending member
    actor.receive(Activate("c", "new", 0))  # flushes the batch, then replays 3 to it
    deliver(actor, pub(4))
    scheduler.end_tick()
    scheduler.end_tick()
    assert numbers(old) == [1, 2, 3, 4]
    assert numbers(new) == [3, 4]


def test_a_skipped_socket_never_gets_the_shared_bytes() -> None:
    """A client event (or a trigger with ``socket_id``) does not reach its sender, on
    the direct path or in a batch; the others still share one object."""
    actor, scheduler = shard()
    _, sender = member(actor, scheduler, "sender")
    _, x = member(actor, scheduler, "x")
    _, y = member(actor, scheduler, "y")
    deliver(actor, pub(1, skip="sender"), pub(2), pub(3, skip="sender"), pub(4),
            pub(5, skip="nobody-here"))
    scheduler.end_tick()
    assert numbers(x) == numbers(y) == [1, 2, 3, 4, 5]
    assert x.writes[1] is y.writes[1]
    assert numbers(sender) == [2, 4, 5]
    assert all(data is not x.writes[1] for data in sender.writes)
    assert len(sender.writes) == 1  # its own join, still one write


def test_closed_and_closing_members_are_skipped_the_others_get_the_batch() -> None:
    actor, scheduler = shard()
    gone, gone_transport = member(actor, scheduler, "gone")
    _, closing = member(actor, scheduler, "closing")
    _, kept = member(actor, scheduler, "kept")
    scheduler.busy = True
    deliver(actor, pub(1), pub(2))
    gone.close()
    closing.closing = True
    scheduler.end_tick()
    assert gone_transport.writes == [] and closing.writes == []
    assert numbers(kept) == [1, 2]


def test_a_slow_consumer_overflows_on_the_batch_the_others_keep_going() -> None:
    actor, scheduler = shard()
    overflows: list[str] = []
    slow, slow_transport = member(actor, scheduler, "slow", max_bytes=40,
                                  overflows=overflows)
    _, fast = member(actor, scheduler, "fast")
    slow.push(b'{"event":"a"}')  # direct
    slow.push(b'{"event":"b"}')  # queued: the batch lands behind it, past the bound
    scheduler.busy = True
    deliver(actor, pub(1), pub(2))
    scheduler.end_tick()
    assert overflows == ["slow"] and slow.closed
    assert len(slow_transport.writes) == 1  # nothing after the overflow
    assert numbers(fast) == [1, 2]


def test_sse_groups_batch_too() -> None:
    actor, scheduler = shard()
    _, a = member(actor, scheduler, "a", SSE_JSON)
    _, b = member(actor, scheduler, "b", SSE_JSON)
    scheduler.busy = True
    deliver(actor, pub(1), pub(2))
    scheduler.end_tick()
    assert a.writes == [SSE_JSON.framing.many([
        SSE_JSON.codec.encode_publication_push("c", pub(n)) for n in (1, 2)])]
    assert a.writes[0] is b.writes[0]
