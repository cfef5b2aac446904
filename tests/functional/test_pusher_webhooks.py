"""Pusher webhooks from Chorus, accepted by the official library's ``validate_webhook``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tests.functional.conftest import free_port, run_node
from tests.functional.pusherkit import (
    KEY,
    auth_backend,
    needs_pusher_js,
    pusher_config,
    pusher_js,
    server_lib,
)
from tests.waiting import wait_until

pytestmark = needs_pusher_js


@asynccontextmanager
async def receiver(fail_first: int = 0,
                   ) -> AsyncIterator[tuple[str, list[dict], list[int], list]]:
    """A webhook endpoint: validated events land in the list; the first ``fail_first``
    requests are answered 500 (the sender must retry)."""
    events: list[dict] = []
    statuses: list[int] = []
    validator: list = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.text()
        if len(statuses) < fail_first:
            statuses.append(500)
            return web.Response(status=500)
        valid = validator[0].validate_webhook(
            key=request.headers["X-Pusher-Key"],
            signature=request.headers["X-Pusher-Signature"], body=body)
        statuses.append(200 if valid is not None else 401)
        if valid is None:
            return web.Response(status=401)
        events.extend(valid["events"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", events, statuses, validator
    finally:
        await runner.cleanup()


async def test_webhooks_are_signed_batched_retried_and_validated_by_the_library():
    async with receiver(fail_first=1) as (url, events, statuses, validator):
        config = pusher_config(webhooks=[{"url": url}])
        async with run_node(config) as node, auth_backend(node) as backend, \
                pusher_js(node, backend) as ann, pusher_js(node, backend) as bob:
            validator.append(server_lib(node))
            for js in (ann, bob):
                await js.expect("connected")
                await js.call("subscribe", channel="presence-room")
                await js.expect("members")
            await ann.call("trigger", channel="presence-room", event="client-hi", data={"a": 1})
            await bob.call("unsubscribe", channel="presence-room")
            await ann.call("unsubscribe", channel="presence-room")

            def names() -> list[str]:
                return [e["name"] for e in events]

            # The first batch (occupied, member_added) failed once and is retried after a
            # backoff, so later batches may land before it: wait for all of them.
            await wait_until(lambda: names().count("member_removed") == 2
                             and "channel_vacated" in names()
                             and "channel_occupied" in names(), timeout=10)
            assert statuses[0] == 500 and 200 in statuses  # retried after the failure
            assert names().count("channel_occupied") == 1
            assert names().count("member_added") == 2
            client = next(e for e in events if e["name"] == "client_event")
            assert client["event"] == "client-hi" and client["channel"] == "presence-room"
            assert client["user_id"] and client["socket_id"]


async def test_a_webhook_gets_only_its_event_types_and_forged_ones_fail_validation():
    async with receiver() as (url, events, _, validator):
        config = pusher_config(webhooks=[{"url": url, "event_types": ["channel_vacated"]}])
        async with run_node(config) as node, pusher_js(node) as js:
            validator.append(server_lib(node))
            await js.expect("connected")
            await js.call("subscribe", channel="news")
            await js.expect("members")
            await js.call("unsubscribe", channel="news")
            await wait_until(lambda: bool(events), timeout=10)
            await asyncio.sleep(0.2)  # a stray channel_occupied would be in by now
            assert [e["name"] for e in events] == ["channel_vacated"]
            lib = validator[0]
            assert lib.validate_webhook(key=KEY, signature="0" * 64,
                                        body='{"time_ms": 1, "events": []}') is None
