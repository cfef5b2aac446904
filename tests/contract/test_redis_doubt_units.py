"""Pure parts of the in-doubt machinery (broker.engine.redis_doubt) and the receiver's
reactions to a stream that diverged: no server, no event loop (but for the catch-up,
which is a coroutine fed a fake stream read)."""

from __future__ import annotations

import hashlib

import pytest

from broker.engine.redis_codec import DecodeError, KeyScheme, decode_epoch
from broker.engine.redis_doubt import MAX_ENTRIES, InDoubt, Outcome
from broker.engine.redis_receive import Receiver
from broker.types import Publication, StreamPosition
from tests.waiting import wait_until


def test_epoch_message_as_the_verify_script_builds_it() -> None:
    assert decode_epoch(b"e12:abcd") == StreamPosition(12, "abcd")
    assert decode_epoch(b"e0:x") == StreamPosition(0, "x")
    for bad in (b"", b"p1:e:body", b"e12", b"ex:abcd"):
        with pytest.raises(DecodeError):
            decode_epoch(bad)


def test_unconfirmed_publications_are_kept_per_channel_and_epoch_with_digests() -> None:
    doubts = InDoubt()
    doubts.unconfirmed("c", StreamPosition(5, "e"), b"five")
    doubts.unconfirmed("c", StreamPosition(6, "e"), b"six")
    doubts.unconfirmed("c", StreamPosition(1, "f"), b"one")
    [(_, first), (_, second)] = doubts.items()
    assert (first.epoch, first.seen, second.epoch) == ("e", 6, "f")
    assert first.args() == ["", "0", 6, 5, hashlib.sha1(b"five").hexdigest(),
                            6, hashlib.sha1(b"six").hexdigest()]


def test_too_many_entries_or_a_stream_that_went_back_force_a_new_epoch() -> None:
    doubts = InDoubt()
    for offset in range(1, MAX_ENTRIES + 2):
        doubts.unconfirmed("busy", StreamPosition(offset, "e"), b"x")
    doubts.went_back("back", StreamPosition(9, "e"))
    busy, back = (doubt for _, doubt in doubts.items())
    assert busy.args() == ["", "1", MAX_ENTRIES + 1]  # nothing left to compare: forced
    assert back.args() == ["", "1", 9]


def test_a_doubt_ends_only_once_the_replicas_confirm() -> None:
    doubts = InDoubt()
    doubts.unconfirmed("c", StreamPosition(2, "e"), b"two")
    [(_, doubt)] = doubts.items()
    doubts.settle("c", doubt, doubt.version, Outcome.HELD, "server-a", confirmed=False)
    assert len(doubts) == 1 and doubt.server == "server-a"  # a failover may still come
    doubts.settle("c", doubt, doubt.version, Outcome.HELD, "server-b", confirmed=False)
    assert doubt.server == "server-a"  # where it was first seen held
    doubts.settle("c", doubt, doubt.version, Outcome.DIVERGED, "server-b", confirmed=False)
    assert len(doubts) == 1
    doubts.settle("c", doubt, doubt.version, Outcome.MOVED, "server-b", confirmed=True)
    assert len(doubts) == 0


def test_a_publication_filed_during_a_verify_keeps_the_doubt() -> None:
    doubts = InDoubt()
    doubts.unconfirmed("c", StreamPosition(2, "e"), b"two")
    [(_, doubt)] = doubts.items()
    verifying = doubt.version  # VERIFY sent with offset 2 only
    doubts.unconfirmed("c", StreamPosition(3, "e"), b"three")
    doubts.settle("c", doubt, verifying, Outcome.HELD, "server-a", confirmed=True)
    assert len(doubts) == 1 and doubt.server == ""  # 3 was not checked anywhere yet
    doubts.settle("c", doubt, doubt.version, Outcome.HELD, "server-a", confirmed=True)
    assert len(doubts) == 0


def _receiver(read: object = None) -> tuple[Receiver, list[str], list[StreamPosition]]:
    receiver = Receiver(None, KeyScheme("t"), "me", read, io_timeout=1.0,  # type: ignore[arg-type]
                        backoff=lambda: None)  # type: ignore[arg-type,return-value]
    unrecoverable: list[str] = []
    went_back: list[StreamPosition] = []
    receiver.handlers.unrecoverable = unrecoverable.append
    receiver.went_back = lambda channel, position: went_back.append(position)
    receiver.channels.add("c")
    return receiver, unrecoverable, went_back


def test_an_announced_epoch_resyncs_the_channel_and_moves_its_position() -> None:
    receiver, unrecoverable, _ = _receiver()
    delivered: list[int] = []
    receiver.handlers.publication = lambda channel, pub, position: delivered.append(pub.offset)
    receiver.tracker.set("c", StreamPosition(2, "old"))
    assert receiver._message(KeyScheme("t").pubsub("c"), b"e2:new") is None
    assert unrecoverable == ["c"]
    assert receiver.tracker.get("c") == StreamPosition(2, "new")
    receiver._message(KeyScheme("t").pubsub("c"), b"e2:new")  # heard twice: once is enough
    assert unrecoverable == ["c"]
    # The reused offset, in the new epoch, is delivered (it used to be a "duplicate").
    from broker.engine.redis_codec import encode_body
    body = encode_body("other", 0, b"x", None, None)
    receiver._message(KeyScheme("t").pubsub("c"), b"p3:new:" + body)
    assert delivered == [3]


async def test_a_catch_up_below_the_last_position_reports_the_stream_went_back() -> None:
    async def read(channel: str, since: StreamPosition | None) -> object:
        return [], StreamPosition(1, "e"), 2  # offset beyond top, same epoch

    receiver, unrecoverable, went_back = _receiver(read)
    receiver.tracker.set("c", StreamPosition(2, "e"))
    await receiver.catch_up("c")
    assert went_back == [StreamPosition(2, "e")] and unrecoverable == ["c"]


async def test_a_catch_up_in_another_epoch_is_not_a_stream_that_went_back() -> None:
    async def read(channel: str, since: StreamPosition | None) -> object:
        return [(Publication(b"1", 1), "other")], StreamPosition(1, "f"), 1

    receiver, unrecoverable, went_back = _receiver(read)
    receiver.tracker.set("c", StreamPosition(2, "e"))
    await receiver.catch_up("c")
    assert went_back == [] and unrecoverable == ["c"]


async def test_the_resolver_retries_until_the_replicas_confirm() -> None:
    import asyncio

    from broker.engine.redis_codec import encode_body
    from broker.engine.redis_doubt import Doubt, DoubtResolver
    from broker.engine.redis_pubsub import Backoff

    answers: list[object] = [ConnectionError("primary moving"),
                             (Outcome.HELD, "server-a", False),
                             (Outcome.HELD, "server-a", True)]
    asked: list[tuple[str, str]] = []

    async def verify(channel: str, doubt: Doubt) -> tuple[Outcome, str, bool]:
        asked.append((channel, doubt.server))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    resolver = DoubtResolver(verify, Backoff(0.001, 0.002))
    resolver.unconfirmed("c", b"p0::" + encode_body("me", 0, b"x", None, None))
    assert len(resolver.doubts) == 0  # no history: no offset to reuse, nothing to check
    resolver.unconfirmed("c", b"p4:e:" + encode_body("me", 0, b"x", None, None))
    running = asyncio.get_running_loop().create_task(resolver.run())
    try:
        await wait_until(lambda: not answers and not len(resolver.doubts), "resolved")
    finally:
        running.cancel()
    # The second time the doubt knew the server holding it; the third resolved it.
    assert asked == [("c", ""), ("c", ""), ("c", "server-a")]
