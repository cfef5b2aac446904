"""The remote leg: what one node's engine delivers to another's (multi-node engines only).

Each test makes two nodes of one cluster. A node must never get its own messages back:
that is checked by ordering — A sends x, B answers y after seeing x; messages on one
channel are ordered, so had A's own x come back it would be in A's record before y.
"""

from __future__ import annotations

import pytest

from broker.types import ClientInfo, StreamPosition
from tests.contract.conftest import MakeNode
from tests.contract.helpers import eventually

pytestmark = pytest.mark.usefixtures("multi_node")

INFO = ClientInfo("u", "c1", conn_info=b'{"a":1}')


async def test_publication_reaches_other_node_with_position_not_self(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await a.engine.subscribe("ch")
    await b.engine.subscribe("ch")
    sent, pos = await a.engine.publish("ch", b'{"x":1}', info=INFO, history_size=10, history_ttl=60)
    await eventually(lambda: len(b.received.publications) == 1)
    assert b.received.publications[0] == ("ch", sent, pos)
    reply, _ = await b.engine.publish("ch", b'{"y":1}', history_size=10, history_ttl=60)
    await eventually(lambda: len(a.received.publications) == 1)
    assert a.received.publications == [("ch", reply, StreamPosition(2, pos.epoch))]
    assert len(b.received.publications) == 1


async def test_publication_without_history_has_no_position(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await b.engine.subscribe("ch")
    sent, _ = await a.engine.publish("ch", b"1", tags={"k": "v"})
    await eventually(lambda: len(b.received.publications) == 1)
    assert b.received.publications[0] == ("ch", sent, None)


async def test_unsubscribed_node_stops_receiving(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await b.engine.subscribe("ch")
    await b.engine.subscribe("marker")
    await b.engine.unsubscribe("ch")
    await a.engine.publish("ch", b"lost")
    await a.engine.publish("marker", b"seen")
    await eventually(lambda: len(b.received.publications) == 1)
    assert b.received.publications[0][0] == "marker"


async def test_join_leave_and_control_reach_other_node(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await b.engine.subscribe("ch")
    await a.engine.publish_join("ch", INFO)
    await a.engine.publish_leave("ch", INFO)
    await a.engine.publish_control(b"ctl")
    await eventually(lambda: b.received.controls == [b"ctl"])
    await eventually(lambda: b.received.leaves == [("ch", INFO)])
    assert b.received.joins == [("ch", INFO)]
    await b.engine.publish_control(b"back")
    await eventually(lambda: a.received.controls == [b"back"])
    assert a.received.joins == a.received.leaves == []


async def test_history_and_presence_are_shared(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    stored, pos = await a.engine.publish("ch", b"1", history_size=10, history_ttl=60)
    assert await b.engine.history("ch", limit=-1) == ([stored], pos)
    _, next_pos = await b.engine.publish("ch", b"2", history_size=10, history_ttl=60)
    assert next_pos == StreamPosition(2, pos.epoch)
    await a.engine.add_presence("ch", "c1", INFO, 60)
    assert await b.engine.presence("ch") == {"c1": INFO}
    await b.engine.remove_presence("ch", "c1", "u")
    assert await a.engine.presence_stats("ch") == (0, 0)


async def test_the_delta_flag_reaches_other_nodes(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    await b.engine.subscribe("ch")
    await b.engine.subscribe("bare")
    await a.engine.publish("ch", b"1", history_size=10, history_ttl=60, delta=True)
    await a.engine.publish("bare", b"2", delta=True)
    await a.engine.publish("bare", b"3")
    await eventually(lambda: len(b.received.publications) == 3)
    got = {pub.data: pub.delta for _, pub, _ in b.received.publications}
    assert got == {b"1": True, b"2": True, b"3": False}
