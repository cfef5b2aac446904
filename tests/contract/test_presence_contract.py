"""The PresenceManager contract, every engine."""

from __future__ import annotations

from broker.engine.base import Engine
from broker.types import ClientInfo
from tests.contract.helpers import eventually

ALICE_1 = ClientInfo("alice", "c1", conn_info=b'{"name":"Alice"}', chan_info=b'{"role":"x"}')
ALICE_2 = ClientInfo("alice", "c2")
BOB = ClientInfo("bob", "c3")


async def test_add_get_and_stats_count_users_once(engine: Engine) -> None:
    for info in (ALICE_1, ALICE_2, BOB):
        await engine.add_presence("ch", info.client, info, 60)
    assert await engine.presence("ch") == {"c1": ALICE_1, "c2": ALICE_2, "c3": BOB}
    assert await engine.presence_stats("ch") == (3, 2)
    assert await engine.presence("other") == {}
    assert await engine.presence_stats("other") == (0, 0)


async def test_remove_updates_presence_and_user_count(engine: Engine) -> None:
    for info in (ALICE_1, ALICE_2, BOB):
        await engine.add_presence("ch", info.client, info, 60)
    await engine.remove_presence("ch", "c1", "alice")
    assert await engine.presence_stats("ch") == (2, 2)
    await engine.remove_presence("ch", "c2", "alice")
    await engine.remove_presence("ch", "c2", "alice")  # idempotent
    assert await engine.presence("ch") == {"c3": BOB}
    assert await engine.presence_stats("ch") == (1, 1)


async def test_refresh_replaces_info_without_double_count(engine: Engine) -> None:
    await engine.add_presence("ch", "c1", ALICE_2, 60)
    await engine.add_presence("ch", "c1", ALICE_1, 60)
    assert await engine.presence("ch") == {"c1": ALICE_1}
    assert await engine.presence_stats("ch") == (1, 1)


async def test_presence_expires_after_ttl_unless_refreshed(engine: Engine) -> None:
    await engine.add_presence("ch", "c1", ALICE_1, 0.3)
    await engine.add_presence("ch", "c3", BOB, 60)

    async def c1_gone() -> bool:
        return set(await engine.presence("ch")) == {"c3"}

    await eventually(c1_gone)
    assert await engine.presence_stats("ch") == (1, 1)
