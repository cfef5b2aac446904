"""Hostile and broken clients over raw WebSockets: each gets the protocol's answer (an
error reply, or a close with its code) and every other client keeps receiving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    WAIT,
    RunningNode,
    SdkClient,
    SubEvents,
    base_config,
    next_event,
    run_node,
    sdk_client,
)

LIMIT = 4096  # websocket.message_size_limit of these tests
_values = count()


class Witness:
    """An SDK client subscribed to ``witness``: the bystander that must not notice."""

    def __init__(self, node: RunningNode, sdk: SdkClient, events: SubEvents) -> None:
        self.node, self.sdk, self.events = node, sdk, events

    async def still_receives(self) -> None:
        value = next(_values)
        status, _ = await self.node.api("publish", {"channel": "witness", "data": value})
        assert status == 200
        assert (await next_event(self.events.publications)).data == value
        assert self.sdk.client_id in self.node.node.connections


@asynccontextmanager
async def witnessed(**config: Any) -> AsyncIterator[Witness]:
    mapping = base_config(websocket={"message_size_limit": LIMIT}, **config)
    async with run_node(mapping) as node, sdk_client(node, user="witness") as sdk:
        _, events = await sdk.subscribe("witness")
        witness = Witness(node, sdk, events)
        await witness.still_receives()
        yield witness


@asynccontextmanager
async def raw_client(node: RunningNode, *, connect: bool = True,
                     protobuf: bool = False) -> AsyncIterator[ClientWebSocketResponse]:
    protocols = ("centrifuge-protobuf",) if protobuf else ()
    async with node.session.ws_connect(node.ws_url, protocols=protocols) as ws:
        if connect:
            await ws.send_json({"id": 1, "connect": {"token": make_token(SECRET, "raw")}})
            assert "connect" in await ws.receive_json(timeout=WAIT)
        yield ws


async def closed_with(ws: ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; its close code."""
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return ws.close_code


async def replies(ws: ClientWebSocketResponse, *commands: dict[str, Any]) -> list[Any]:
    """Send ``commands`` in one message; the replies to them, in order."""
    await ws.send_str("\n".join(json.dumps(c) for c in commands))
    out: list[Any] = []
    while len(out) < len(commands):
        message = await ws.receive(timeout=WAIT)
        assert message.type is WSMsgType.TEXT, message
        out.extend(json.loads(line) for line in message.data.splitlines())
    return out


async def test_malformed_json_closes_with_3501() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        await ws.send_str('{"id": 2, "subscribe": {"channel": ')
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_malformed_protobuf_closes_with_3501() -> None:
    async with witnessed() as witness, \
            raw_client(witness.node, connect=False, protobuf=True) as ws:
        await ws.send_bytes(b"\x7f\x0a\x03abc")  # a length prefix past the end of the data
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_wrong_frame_type_closes_with_3501() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        await ws.send_bytes(b"\x00\x01\x02")  # binary on a JSON connection
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_unknown_command_is_answered_104() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        bad, ping = await replies(ws, {"id": 2, "frobnicate": {}}, {"id": 3, "ping": {}})
        assert bad == {"id": 2, "error": {"code": 104, "message": "method not found"}}
        assert ping == {"id": 3, "ping": {}}  # the connection carries on
        await witness.still_receives()


async def test_oversize_message_closes_with_1009() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        await ws.send_json({"id": 2, "publish": {"channel": "witness", "data": "x" * LIMIT}})
        assert await closed_with(ws) == 1009
        await witness.still_receives()
        assert witness.events.publications.empty(), "the oversize publish never happened"


async def test_command_before_connect_closes_with_3501() -> None:
    async with witnessed() as witness, raw_client(witness.node, connect=False) as ws:
        await ws.send_json({"id": 1, "subscribe": {"channel": "witness"}})
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_second_connect_closes_with_3501() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        await ws.send_json({"id": 2, "connect": {"token": make_token(SECRET, "raw")}})
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_duplicate_subscription_is_answered_105() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        first, second = await replies(ws, {"id": 2, "subscribe": {"channel": "witness"}},
                                      {"id": 3, "subscribe": {"channel": "witness"}})
        assert first == {"id": 2, "subscribe": {}}
        assert second == {"id": 3, "error": {"code": 105, "message": "already subscribed"}}
        await witness.still_receives()
        # the raw client's one subscription is still live, exactly once
        message = await ws.receive_json(timeout=WAIT)
        assert message["push"]["channel"] == "witness"


async def test_publish_without_permission_is_answered_103() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        denied, = await replies(ws, {"id": 2, "publish": {"channel": "witness",
                                                          "data": "forged"}})
        assert denied == {"id": 2, "error": {"code": 103, "message": "permission denied"}}
        await witness.still_receives()  # and "forged" never reached it


async def test_command_without_id_closes_with_3501() -> None:
    async with witnessed() as witness, raw_client(witness.node) as ws:
        await ws.send_json({"subscribe": {"channel": "witness"}})
        assert await closed_with(ws) == 3501
        await witness.still_receives()


async def test_command_flood_is_cut_off_with_3013() -> None:
    config = {"client": {"command_rate_limit": {"enabled": True, "rate_per_second": 1,
                                                "burst": 5}}}
    async with witnessed(**config) as witness, raw_client(witness.node) as ws:
        await ws.send_str("\n".join(json.dumps({"id": n, "ping": {}}) for n in range(2, 50)))
        assert await closed_with(ws) == 3013
        await witness.still_receives()


async def test_a_client_that_stops_reading_is_dropped_as_slow() -> None:
    config = {"client": {"queue_max_size": 256 * 1024}}
    async with witnessed(**config) as witness, raw_client(witness.node) as ws:
        await replies(ws, {"id": 2, "subscribe": {"channel": "firehose"}})
        big = "y" * 60_000
        # Until the node gives up on the reader (kernel buffers may absorb a few MB first).
        for _ in range(500):
            if witness.node.node.slow_consumers:
                break
            status, _ = await witness.node.api("publish", {"channel": "firehose", "data": big})
            assert status == 200
        assert witness.node.node.slow_consumers == 1
        assert await closed_with(ws) == 3008
        await witness.still_receives()
