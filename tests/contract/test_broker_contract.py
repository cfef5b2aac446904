"""The Broker contract (publish, history, remove_history, idempotency), every engine."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.engine.base import Engine, EngineError, SuppressedPublish, UnrecoverablePosition
from broker.types import ClientInfo, Publication, StreamPosition
from tests.contract.conftest import MakeNode, Node
from tests.contract.helpers import eventually


async def put(
    engine: Engine,
    channel: str,
    data: bytes = b"{}",
    *,
    size: int = 10,
    ttl: float = 60.0,
    key: str | None = None,
    key_ttl: float = 0.0,
) -> tuple[Publication, StreamPosition]:
    """Publish with history on (the common case of this suite)."""
    return await engine.publish(
        channel,
        data,
        history_size=size,
        history_ttl=ttl,
        idempotency_key=key,
        idempotent_ttl=key_ttl,
    )


async def publish_n(
    engine: Engine, channel: str, n: int, *, size: int = 10, ttl: float = 60.0
) -> list[StreamPosition]:
    return [(await put(engine, channel, b"%d" % i, size=size, ttl=ttl))[1] for i in range(n)]


def offsets(pubs: list[Publication]) -> list[int]:
    return [p.offset for p in pubs]


async def test_publish_without_history_has_no_position(engine: Engine) -> None:
    info = ClientInfo("u1", "c1", conn_info=b'{"a":1}', chan_info=b"{}")
    before = int(time.time() * 1000)
    pub, pos = await engine.publish("ch", b'{"x":1}', info=info, tags={"k": "v"})
    assert pos == StreamPosition(0, "")
    assert (pub.data, pub.offset, pub.info, pub.tags) == (b'{"x":1}', 0, info, {"k": "v"})
    assert before - 1000 <= pub.time <= int(time.time() * 1000) + 1000
    assert (await engine.history("ch", limit=-1))[0] == []


async def test_offsets_dense_and_epoch_stable(engine: Engine) -> None:
    positions = await publish_n(engine, "ch", 5)
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in positions}) == 1 and positions[0].epoch
    pub, pos = await put(engine, "ch")
    assert pub.offset == pos.offset == 6 and pos.epoch == positions[0].epoch


async def test_history_keeps_payload_info_and_tags(engine: Engine) -> None:
    info = ClientInfo("u1", "c1", conn_info=b'{"a":1}', chan_info=None)
    stored, _ = await engine.publish(
        "ch", b'{"x":1}', info=info, tags={"t": "1"}, history_size=10, history_ttl=60
    )
    pubs, _ = await engine.history("ch", limit=-1)
    assert pubs == [stored]


async def test_channels_have_separate_streams(engine: Engine) -> None:
    a = await publish_n(engine, "a", 3)
    b = await publish_n(engine, "b", 1)
    assert (a[-1].offset, b[-1].offset) == (3, 1)
    assert offsets((await engine.history("b", limit=-1))[0]) == [1]


async def test_history_limit_and_reverse(engine: Engine) -> None:
    top = (await publish_n(engine, "ch", 5))[-1]
    pubs, pos = await engine.history("ch")
    assert pubs == [] and pos == top  # limit 0: only the position
    assert offsets((await engine.history("ch", limit=-1))[0]) == [1, 2, 3, 4, 5]
    assert offsets((await engine.history("ch", limit=2))[0]) == [1, 2]
    assert offsets((await engine.history("ch", limit=2, reverse=True))[0]) == [5, 4]
    assert offsets((await engine.history("ch", limit=-1, reverse=True))[0]) == [5, 4, 3, 2, 1]


async def test_history_since_forward_and_reverse(engine: Engine) -> None:
    top = (await publish_n(engine, "ch", 5))[-1]
    at = lambda offset: StreamPosition(offset, top.epoch)  # noqa: E731
    assert offsets((await engine.history("ch", since=at(2), limit=-1))[0]) == [3, 4, 5]
    assert offsets((await engine.history("ch", since=at(2), limit=1))[0]) == [3]
    pubs, pos = await engine.history("ch", since=top, limit=-1)
    assert pubs == [] and pos == top
    assert offsets((await engine.history("ch", since=at(4), limit=-1, reverse=True))[0]) == [
        3,
        2,
        1,
    ]
    assert offsets((await engine.history("ch", since=at(4), limit=2, reverse=True))[0]) == [3, 2]


async def test_history_size_trims_oldest(engine: Engine) -> None:
    await publish_n(engine, "ch", 5, size=3)
    assert offsets((await engine.history("ch", limit=-1))[0]) == [3, 4, 5]


async def test_unrecoverable_position(engine: Engine) -> None:
    top = (await publish_n(engine, "ch", 5, size=2))[-1]  # window holds 4, 5
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=StreamPosition(4, "another-epoch"), limit=-1)
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=StreamPosition(1, top.epoch), limit=-1)
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=StreamPosition(9, top.epoch), limit=-1)
    # Offset 3 is right before the window: nothing was missed.
    got = await engine.history("ch", since=StreamPosition(3, top.epoch), limit=-1)
    assert offsets(got[0]) == [4, 5]


async def test_an_empty_since_epoch_matches_any_epoch(engine: Engine) -> None:
    """Centrifugo's rule (a client keeping only offsets): the offset is read in the
    current epoch; an offset the stream cannot serve is still unrecoverable."""
    top = (await publish_n(engine, "ch", 5, size=3))[-1]  # window holds 3, 4, 5
    pubs, pos = await engine.history("ch", since=StreamPosition(2, ""), limit=-1)
    assert offsets(pubs) == [3, 4, 5] and pos == top
    assert (await engine.history("ch", since=StreamPosition(5, ""), limit=-1))[0] == []
    for offset in (1, 9):  # publications after 1 trimmed; 9 beyond the top
        with pytest.raises(UnrecoverablePosition):
            await engine.history("ch", since=StreamPosition(offset, ""), limit=-1)


async def test_the_delta_flag_is_kept(engine: Engine) -> None:
    flagged, _ = await engine.publish("ch", b"1", history_size=10, history_ttl=60, delta=True)
    plain, _ = await put(engine, "ch", b"2")
    assert (flagged.delta, plain.delta) == (True, False)
    assert [p.delta for p in (await engine.history("ch", limit=-1))[0]] == [True, False]
    bare, _ = await engine.publish("bare", b"1", delta=True)  # without history too
    assert bare.delta


async def test_history_of_new_channel_gives_epoch_that_first_publish_keeps(engine: Engine) -> None:
    pubs, pos = await engine.history("fresh", limit=-1)
    assert pubs == [] and pos.offset == 0 and pos.epoch
    _, first = await put(engine, "fresh")
    assert first == StreamPosition(1, pos.epoch)
    got = await engine.history("fresh", since=pos, limit=-1)
    assert offsets(got[0]) == [1]


async def test_history_ttl_drops_publications_keeps_epoch_and_top(engine: Engine) -> None:
    top = (await publish_n(engine, "ch", 3, ttl=0.3))[-1]

    async def emptied() -> bool:
        return (await engine.history("ch", limit=-1))[0] == []

    await eventually(emptied)
    assert (await engine.history("ch"))[1] == top
    assert (await engine.history("ch", since=top, limit=-1))[0] == []
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=StreamPosition(1, top.epoch), limit=-1)
    _, pos = await put(engine, "ch")
    assert pos == StreamPosition(4, top.epoch)


async def test_meta_ttl_expiry_starts_new_epoch(make_node: MakeNode) -> None:
    engine = (await make_node(history_meta_ttl=0.3)).engine
    first = (await publish_n(engine, "ch", 2, ttl=0.1))[-1]
    # Every read or publish extends the meta, so polling would keep it alive: this one
    # wait is the only way to observe expiry.
    await asyncio.sleep(0.6)
    pubs, pos = await engine.history("ch", limit=-1)
    assert pubs == [] and pos.offset == 0 and pos.epoch != first.epoch
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=first, limit=-1)


async def test_remove_history_keeps_epoch_and_top(engine: Engine) -> None:
    top = (await publish_n(engine, "ch", 3))[-1]
    await engine.remove_history("ch")
    await engine.remove_history("never-published")
    pubs, pos = await engine.history("ch", limit=-1)
    assert pubs == [] and pos == top
    assert (await engine.history("ch", since=top, limit=-1))[0] == []
    with pytest.raises(UnrecoverablePosition):
        await engine.history("ch", since=StreamPosition(2, top.epoch), limit=-1)
    _, after = await put(engine, "ch")
    assert after == StreamPosition(4, top.epoch)


async def test_idempotency_key_suppresses_duplicate(engine: Engine) -> None:
    first = await put(engine, "ch", b"1", key="k")
    assert not isinstance(first, SuppressedPublish)
    again = await put(engine, "ch", b"other", key="k")
    assert isinstance(again, SuppressedPublish) and tuple(again) == tuple(first)
    assert offsets((await engine.history("ch", limit=-1))[0]) == [1]
    elsewhere = await put(engine, "ch2", b"1", key="k")
    assert not isinstance(elsewhere, SuppressedPublish)
    plain = await engine.publish("plain", b"1", idempotency_key="k")
    assert isinstance(await engine.publish("plain", b"1", idempotency_key="k"), SuppressedPublish)
    assert plain[1] == StreamPosition(0, "")


async def test_idempotency_result_expires(engine: Engine) -> None:
    await put(engine, "ch", key="k", key_ttl=0.3)

    async def published_again() -> bool:
        return not isinstance(await put(engine, "ch", key="k", key_ttl=0.3), SuppressedPublish)

    await eventually(published_again)
    assert offsets((await engine.history("ch", limit=-1))[0]) == [1, 2]


async def test_concurrent_publishes_keep_offsets_dense_and_unique(engine: Engine) -> None:
    tasks, per_task = 20, 25

    async def publisher(i: int) -> list[int]:
        return [
            (await engine.publish("ch", b"%d" % i, history_size=1000, history_ttl=60))[1].offset
            for _ in range(per_task)
        ]

    results = await asyncio.gather(*(publisher(i) for i in range(tasks)))
    got = sorted(o for r in results for o in r)
    assert got == list(range(1, tasks * per_task + 1))
    assert all(r == sorted(r) for r in results)  # each publisher sees its offsets increase
    assert offsets((await engine.history("ch", limit=-1))[0]) == got


async def test_node_messages_do_not_raise_nor_echo(node: Node) -> None:
    engine, info = node.engine, ClientInfo("u", "c")
    await engine.subscribe("ch")
    await engine.subscribe("ch")  # idempotent
    await engine.publish_join("ch", info)
    await engine.publish_leave("ch", info)
    await engine.publish_control(b"ctl")
    await engine.publish("ch", b"1")
    await engine.unsubscribe("ch")
    await engine.unsubscribe("ch")
    assert node.received.empty  # a node never receives its own messages from the engine


async def test_closed_engine_raises_engine_error(make_node: MakeNode) -> None:
    engine = (await make_node()).engine
    await engine.close()
    await engine.close()  # idempotent
    with pytest.raises(EngineError):
        await engine.publish("ch", b"1")
    with pytest.raises(EngineError):
        await engine.history("ch")
