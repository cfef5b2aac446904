"""The OccupancyManager contract, every engine: the first node in and the last node out
of a key are told so, exactly once, even when nodes race."""

from __future__ import annotations

import asyncio

import pytest

from broker.engine.base import Engine
from tests.contract.conftest import MakeNode


async def test_first_in_and_last_out(engine: Engine) -> None:
    assert await engine.occupy("ch", "n1", 60) is True
    assert await engine.occupy("ch", "n1", 60) is False  # a refresh
    assert await engine.occupy("ch", "n2", 60) is False
    assert await engine.occupy("other", "n2", 60) is True  # keys are separate
    assert await engine.vacate("ch", "n1") is False  # n2 still holds it
    assert await engine.vacate("ch", "n2") is True
    assert await engine.vacate("ch", "n2") is False  # idempotent
    assert await engine.vacate("never", "n1") is False
    assert await engine.occupy("ch", "n1", 60) is True  # occupied afresh


async def test_an_expired_hold_no_longer_counts(engine: Engine) -> None:
    await engine.occupy("ch", "dead-node", 0.2)  # a node that died holding "ch"
    # Nothing to observe without taking a hold (which would change the answer), so the
    # test lets the TTL pass.
    await asyncio.sleep(0.5)
    assert await engine.occupy("ch", "n1", 60) is True
    assert await engine.vacate("ch", "dead-node") is False


async def test_ttl_must_be_positive(engine: Engine) -> None:
    with pytest.raises(ValueError):
        await engine.occupy("ch", "n1", 0)


@pytest.mark.usefixtures("multi_node")
async def test_nodes_racing_for_an_empty_key_get_one_first_and_one_last(
        make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    for _ in range(5):
        firsts = await asyncio.gather(a.engine.occupy("race", "a", 60),
                                      b.engine.occupy("race", "b", 60))
        assert sorted(firsts) == [False, True]
        lasts = await asyncio.gather(a.engine.vacate("race", "a"),
                                     b.engine.vacate("race", "b"))
        assert sorted(lasts) == [False, True]
