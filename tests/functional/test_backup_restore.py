"""What Chorus keeps in Redis outlives Redis: AOF across a restart, ``chorus backup`` /
``chorus restore`` across the loss of everything.

Real parts throughout: redis-server processes (the AOF one runs from
deploy/redis/redis.conf, the deployed persistence settings), a node on the Redis
engine, the official Python SDK, and the ``chorus`` CLI as a subprocess. The promise
checked is recovery's: a client gets every publication it missed with ``recovered:
true``, or ``recovered: false`` — never a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from centrifuge import ConnectingContext, StreamPosition

from broker.cache.warm import HOT_STREAM
from tests.functional.conftest import (
    ClientEvents,
    RunningNode,
    base_config,
    drop_transport,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)
from tests.redis_server import persistent_redis, redis_server, respawn

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
AOF_CONFIG = ROOT / "deploy" / "redis" / "redis.conf"


def redis_config(url: str, prefix: str) -> dict[str, Any]:
    history = {"history_size": 100, "history_ttl": "600s", "allow_recovery": True,
               "allow_history_for_subscriber": True}
    return base_config(engine={"type": "redis", "redis": {"address": [url], "prefix": prefix}},
                       channel={"without_namespace": history})


async def publish(node: RunningNode, channel: str, *values: Any) -> list[dict[str, Any]]:
    """Publish each value; retried (idempotently) while the engine reconnects to Redis."""
    results = []
    for value in values:
        params = {"channel": channel, "data": value, "idempotency_key": f"{channel}-{value}"}
        reply: dict[str, Any] = {}

        async def accepted(params: dict[str, Any] = params) -> bool:
            nonlocal reply
            status, reply = await node.api("publish", params)
            return status == 200 and "result" in reply

        await wait_until(accepted, f"publish {value} to {channel}", timeout=15)
        results.append(reply["result"])
    return results


async def chorus_cli(*args: str) -> str:
    """Run ``python -m broker <args>`` (the ``chorus`` command); its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "CENTRIFUGO_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return err.decode()


class WhileAway:
    """Runs ``action`` once, while the SDK client is certainly disconnected (from its
    on_connecting, before it reconnects)."""

    def __init__(self, action: Callable[[], Awaitable[None]]) -> None:
        self.action = action
        self.done = asyncio.Event()

    async def __call__(self, ctx: ConnectingContext) -> None:
        if not self.done.is_set():
            await self.action()
            self.done.set()


async def notes(node: RunningNode, user: str) -> list[tuple[Any, bool]]:
    status, reply = await node.api("notifications", {"user": user})
    assert status == 200, reply
    return [(n["payload"], n["read"]) for n in reply["result"]["notifications"]]


async def add_notes(node: RunningNode, user: str) -> None:
    ids = []
    for n in (1, 2):
        status, reply = await node.api("notify", {"user": user, "payload": {"n": n}})
        assert status == 200, reply
        ids.append(reply["result"]["id"])
    status, _ = await node.api("notifications_mark_read", {"user": user, "ids": ids[:1]})
    assert status == 200


@pytest.mark.parametrize("stop", ["shutdown", "crash"])
async def test_history_and_notifications_survive_a_redis_restart_with_aof(stop: str) -> None:
    """A Redis restart (SIGTERM; or SIGKILL with ``appendfsync always``, so no second of
    writes is in flight) keeps epochs, offsets and inboxes: the client recovers what it
    missed with ``recovered: true`` in the same epoch, and offsets go on."""
    extra = ("--appendfsync", "always") if stop == "crash" else ()
    with persistent_redis(AOF_CONFIG, extra=extra) as redis:
        async with run_node(redis_config(redis.url, f"aof-{stop}")) as node:

            async def restart_then_publish() -> None:
                await asyncio.to_thread(redis.restart, crash=stop == "crash")
                await publish(node, "feed", 4, 5)

            away = WhileAway(restart_then_publish)
            async with sdk_client(node, events=ClientEvents(away)) as sdk:
                _, events = await sdk.subscribe("feed", recoverable=True)
                epoch = (await next_event(events.subscribed)).stream_position.epoch
                await publish(node, "feed", 1, 2, 3)
                assert [(await next_event(events.publications)).offset
                        for _ in range(3)] == [1, 2, 3]
                await add_notes(node, "alice")
                drop_transport(sdk.client)
                await away.done.wait()
                again = await next_event(events.subscribed)
                assert (again.was_recovering, again.recovered) == (True, True)
                assert again.stream_position.epoch == epoch
                missed = [await next_event(events.publications) for _ in range(2)]
                assert [(p.offset, p.data) for p in missed] == [(4, 4), (5, 5)]
                [after] = await publish(node, "feed", 6)
                assert after == {"offset": 6, "epoch": epoch}
                assert (await next_event(events.publications)).offset == 6
            assert await notes(node, "alice") == [({"n": 1}, True), ({"n": 2}, False)]


async def test_restore_into_an_empty_redis_recovers_whole_streams_and_refuses_gaps(
        tmp_path: Path) -> None:
    """Back up, publish more on one channel, lose Redis, restore: a client on the channel
    whose stream the backup holds whole recovers (``recovered: true``); a client whose
    position lies past the restored top (it saw publications made after the backup) is
    told ``recovered: false`` under a new epoch; a client behind the restored top
    recovers the restored publications; offsets go on from the restored top."""
    backup_file, config_file = tmp_path / "chorus.jsonl.gz", tmp_path / "chorus.json"
    with redis_server() as server, contextlib.ExitStack() as stack:
        config = redis_config(server.url, "restore")
        config_file.write_text(json.dumps(config))
        async with run_node(config) as node:

            async def lose_redis_then_restore() -> None:
                await asyncio.to_thread(server.process.terminate)
                await asyncio.to_thread(server.process.wait)
                await asyncio.to_thread(stack.enter_context, respawn(server))  # empty
                out = await chorus_cli("restore", "-c", str(config_file), str(backup_file))
                assert "restore: 3 channels (6 publications), 1 inboxes (2 notifications)" \
                    in out, out

            away = WhileAway(lose_redis_then_restore)
            async with sdk_client(node, events=ClientEvents(away)) as sdk, \
                    sdk_client(node, user="bob") as behind:
                _, whole = await sdk.subscribe("whole", recoverable=True)
                _, gap = await sdk.subscribe("gap", recoverable=True)
                _, late = await behind.subscribe("gap", recoverable=True)
                first = {name: (await next_event(ev.subscribed)).stream_position.epoch
                         for name, ev in (("whole", whole), ("gap", gap), ("late", late))}
                await publish(node, "whole", 1, 2, 3)
                await publish(node, "gap", 1, 2, 3)
                for ev in (whole, gap, late):
                    assert [(await next_event(ev.publications)).offset
                            for _ in range(3)] == [1, 2, 3]
                await add_notes(node, "alice")
                out = await chorus_cli("backup", "-c", str(config_file), "-o", str(backup_file))
                # The third channel is the node's saved hot-channel list (still empty).
                assert "backup: 3 channels (6 publications), 1 inboxes (2 notifications)" \
                    in out, out
                with gzip.open(backup_file, "rt") as saved:
                    assert HOT_STREAM in {json.loads(line).get("channel") for line in saved}
                await behind.client.disconnect()  # stays at gap offset 3
                await publish(node, "gap", 4, 5)  # after the backup: lost with Redis
                assert [(await next_event(gap.publications)).offset
                        for _ in range(2)] == [4, 5]
                drop_transport(sdk.client)
                await away.done.wait()

                def resubscribed(ev: Any) -> Awaitable[Any]:
                    return next_event(ev.subscribed, timeout=15)

                again = await resubscribed(whole)
                assert (again.was_recovering, again.recovered) == (True, True)
                assert again.stream_position.offset == 3
                assert again.stream_position.epoch != first["whole"]  # restored: new epoch
                again = await resubscribed(gap)
                assert (again.was_recovering, again.recovered) == (True, False)
                assert again.stream_position.offset == 3
                assert again.stream_position.epoch != first["gap"]
                new_gap_epoch = again.stream_position.epoch
                await behind.client.connect()
                again = await resubscribed(late)
                assert (again.was_recovering, again.recovered) == (True, True)
                assert again.stream_position == StreamPosition(offset=3, epoch=new_gap_epoch)
                [after] = await publish(node, "gap", "after")
                assert after == {"offset": 4, "epoch": new_gap_epoch}
                for ev in (gap, late):
                    pub = await next_event(ev.publications)
                    assert (pub.offset, pub.data) == (4, "after")
                [whole_after] = await publish(node, "whole", 4)
                assert whole_after["offset"] == 4
                assert (await next_event(whole.publications)).offset == 4
            assert await notes(node, "alice") == [({"n": 1}, True), ({"n": 2}, False)]



@pytest.mark.parametrize("noticed_by", ["publication", "reconnect"])
async def test_a_connected_client_is_moved_onto_the_restored_epoch(
        tmp_path: Path, noticed_by: str) -> None:
    """Redis is emptied and restored under a running node whose client stays connected
    (FLUSHALL: the node's connections survive, so it notices only later). The node
    notices the new epoch on its next publication, or when its pub/sub link is re-made
    and it catches up; either way the client is told to resubscribe (2500) and recovers
    with ``recovered: true`` in the new epoch, each publication once."""
    backup_file, config_file = tmp_path / "chorus.jsonl", tmp_path / "chorus.json"
    with redis_server() as server:
        config = redis_config(server.url, f"live-{noticed_by}")
        config_file.write_text(json.dumps(config))
        admin = aioredis.Redis(port=server.port)
        try:
            async with run_node(config) as node, sdk_client(node) as sdk:
                _, events = await sdk.subscribe("live", recoverable=True)
                epoch = (await next_event(events.subscribed)).stream_position.epoch
                await publish(node, "live", 1, 2, 3)
                assert [(await next_event(events.publications)).offset
                        for _ in range(3)] == [1, 2, 3]
                await chorus_cli("backup", "-c", str(config_file), "-o", str(backup_file))
                await admin.flushall()
                await chorus_cli("restore", "-c", str(config_file), str(backup_file))
                if noticed_by == "publication":
                    await publish(node, "live", 4)
                else:
                    await admin.client_kill_filter(_type="pubsub")
                again = await next_event(events.subscribed, timeout=15)
                assert (again.was_recovering, again.recovered) == (True, True)
                assert again.stream_position.epoch != epoch
                if noticed_by == "reconnect":
                    await publish(node, "live", 4)
                pub = await next_event(events.publications)
                assert (pub.offset, pub.data) == (4, 4)
                await publish(node, "live", 5)
                assert (await next_event(events.publications)).offset == 5
                assert events.publications.empty()
        finally:
            await admin.aclose()
