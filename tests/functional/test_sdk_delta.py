"""Fossil delta publications with the official Python SDK, over JSON and protobuf.

The SDK applies each delta to the previous publication itself (``apply_delta``), so a
subscriber that sees the right data on every publication proves the deltas are right;
the wire is inspected only to prove deltas were actually sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from centrifuge import CentrifugeError, ConnectingContext, DeltaType
from centrifuge.filter import Filter

from broker.auth import make_token
from broker.connection.outbox import Outbox
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from tests.functional.conftest import (
    SECRET,
    WAIT,
    ClientEvents,
    base_config,
    drop_transport,
    next_event,
    run_node,
    sdk_client,
)

HISTORY = {"history_size": 100, "history_ttl": "60s", "allow_recovery": True}


def delta_config(**options: Any) -> dict[str, Any]:
    """A "prices" namespace with fossil deltas, published with delta unless
    ``delta_publish=False`` is given."""
    return base_config(channel={"namespaces": [{
        "name": "prices", "allow_subscribe_for_client": True,
        "allowed_delta_types": ["fossil"], "delta_publish": True, **options}]})


def document(n: int) -> dict[str, Any]:
    """Big and mostly unchanged between publications: the case deltas are for."""
    return {"n": n, "symbol": "AAPL", "levels": [[i, i * 2, "bid"] for i in range(40)],
            "note": "ünïcode ✓ stays valid"}


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every publication pushed to any outbox, decoded (the pushes' ``pub`` dicts)."""
    seen: list[dict[str, Any]] = []
    original = Outbox.push

    def push(self: Outbox, frame: bytes, *args: Any, **kwargs: Any) -> Any:
        codec = PROTOBUF_CODEC if self.binary else JSON_CODEC
        for reply in codec.decode_replies(frame):
            pub = reply.get("push", {}).get("pub")
            if pub is not None:
                seen.append(pub)
        return original(self, frame, *args, **kwargs)

    monkeypatch.setattr(Outbox, "push", push)
    return seen


@pytest.mark.parametrize("published_with", ["delta_publish", "api", "nothing"])
async def test_delta_subscriber_gets_every_publication_right(
        protobuf: bool, wire: list[dict[str, Any]], published_with: str) -> None:
    """Deltas go out for publications published with delta: the namespace's
    ``delta_publish`` or the API's per-call ``delta`` (as Centrifugo); otherwise the
    delta subscriber gets each publication in full. The data is right either way."""
    config = delta_config(delta_publish=published_with == "delta_publish")
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, user="d") as sdk, \
            sdk_client(node, protobuf=not protobuf, user="p") as plain:
        _, events = await sdk.subscribe("prices:aapl", delta=DeltaType.FOSSIL)
        _, plain_events = await plain.subscribe("prices:aapl")
        for n in range(1, 6):
            params = {"channel": "prices:aapl", "data": document(n)}
            if published_with == "api":
                params["delta"] = True
            status, body = await node.api("publish", params)
            assert status == 200 and "error" not in body
        got = [sdk.value((await next_event(events.publications)).data) for _ in range(5)]
        assert got == [document(n) for n in range(1, 6)]
        plain_got = [plain.value((await next_event(plain_events.publications)).data)
                     for _ in range(5)]
        assert plain_got == got
    deltas = [p for p in wire if p.get("delta")]
    if published_with == "nothing":
        assert deltas == []
        return
    # First in full, then 4 deltas each much smaller than the document.
    assert len(deltas) == 4
    full = len(str(document(1)))
    assert all(len(p["data"]) < full // 4 for p in deltas)


async def test_client_publications_follow_delta_publish(
        protobuf: bool, wire: list[dict[str, Any]]) -> None:
    """A client's own publish in a ``delta_publish`` namespace goes out as deltas too."""
    config = delta_config(allow_publish_for_subscriber=True)
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, user="d") as sdk:
        sub, events = await sdk.subscribe("prices:own", delta=DeltaType.FOSSIL)
        for n in (1, 2, 3):
            await sub.publish(sdk.payload(document(n)))
        got = [sdk.value((await next_event(events.publications)).data) for _ in range(3)]
        assert got == [document(n) for n in (1, 2, 3)]
    assert len([p for p in wire if p.get("delta")]) == 2


async def test_delta_is_off_when_namespace_does_not_allow_it(
        protobuf: bool, wire: list[dict[str, Any]]) -> None:
    config = base_config(channel={"namespaces": [{"name": "prices",
                                                  "allow_subscribe_for_client": True}]})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, events = await sdk.subscribe("prices:x", delta=DeltaType.FOSSIL)
        assert sub._delta_negotiated is False  # the SDK keeps no public flag for it
        for n in (1, 2):
            await node.api("publish", {"channel": "prices:x", "data": document(n)})
        got = [sdk.value((await next_event(events.publications)).data) for _ in range(2)]
        assert got == [document(1), document(2)]
    assert not any(p.get("delta") for p in wire)


async def test_late_delta_subscriber_starts_from_a_full_publication(protobuf: bool) -> None:
    async with run_node(delta_config()) as node, \
            sdk_client(node, protobuf=protobuf, user="a") as early, \
            sdk_client(node, protobuf=protobuf, user="b") as late:
        _, early_events = await early.subscribe("prices:q", delta=DeltaType.FOSSIL)
        await node.api("publish", {"channel": "prices:q", "data": document(1)})
        await node.api("publish", {"channel": "prices:q", "data": document(2)})
        _, late_events = await late.subscribe("prices:q", delta=DeltaType.FOSSIL)
        await node.api("publish", {"channel": "prices:q", "data": document(3)})
        await node.api("publish", {"channel": "prices:q", "data": document(4)})
        early_got = [early.value((await next_event(early_events.publications)).data)
                     for _ in range(4)]
        late_got = [late.value((await next_event(late_events.publications)).data)
                    for _ in range(2)]
        assert early_got == [document(n) for n in range(1, 5)]
        assert late_got == [document(3), document(4)]


async def test_delta_subscriber_recovers_then_follows_deltas(protobuf: bool) -> None:
    async with run_node(delta_config(**HISTORY)) as node:
        published = asyncio.Event()

        async def gap(ctx: ConnectingContext) -> None:  # runs while certainly disconnected
            if not published.is_set():
                for n in (2, 3):
                    await node.api("publish", {"channel": "prices:r", "data": document(n)})
                published.set()

        async with sdk_client(node, protobuf=protobuf, events=ClientEvents(gap)) as sdk:
            _, events = await sdk.subscribe("prices:r", delta=DeltaType.FOSSIL,
                                            recoverable=True)
            await next_event(events.subscribed)
            await node.api("publish", {"channel": "prices:r", "data": document(1)})
            assert sdk.value((await next_event(events.publications)).data) == document(1)
            drop_transport(sdk.client)
            again = await next_event(events.subscribed)
            assert again.was_recovering and again.recovered
            await node.api("publish", {"channel": "prices:r", "data": document(4)})
            await node.api("publish", {"channel": "prices:r", "data": document(5)})
            got = [await next_event(events.publications) for _ in range(4)]
            assert [sdk.value(p.data) for p in got] == [document(n) for n in range(2, 6)]
            assert [p.offset for p in got] == [2, 3, 4, 5]


async def test_sdk_refuses_delta_with_tags_filter() -> None:
    async with run_node(delta_config()) as node, sdk_client(node) as sdk:
        with pytest.raises(CentrifugeError):
            sdk.client.new_subscription("prices:z", delta=DeltaType.FOSSIL,
                                        tags_filter=Filter.exists("k"))


@pytest.mark.parametrize("request_options", [
    {"delta": "fossil", "tf": {"key": "k", "cmp": "ex"}},  # cannot be combined
    {"delta": "xdelta"},  # unknown type
], ids=["with-filter", "unknown-type"])
async def test_server_refuses_bad_delta_requests(request_options: dict[str, Any]) -> None:
    """Raw JSON commands: the SDK would not send these."""
    async with run_node(delta_config()) as node, \
            node.session.ws_connect(node.ws_url) as ws:
        token = make_token(SECRET, "raw")
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
        assert "connect" in json.loads(await ws.receive_str(timeout=WAIT))
        subscribe = {"channel": "prices:z", **request_options}
        await ws.send_str(json.dumps({"id": 2, "subscribe": subscribe}))
        reply = json.loads(await ws.receive_str(timeout=WAIT))
        assert reply["id"] == 2 and reply["error"]["code"] == 107
