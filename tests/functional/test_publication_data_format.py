"""``publication_data_format`` (Centrifugo v6): what publication data a namespace takes,
from clients (107 bad request) and from the server API alike. "" (the default) refuses
empty data, "json" needs valid JSON, "json_object" a JSON object, "binary" anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from centrifuge import ReplyError

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    WAIT,
    RunningNode,
    base_config,
    next_event,
    run_node,
    sdk_client,
)


def config(**channel: Any) -> dict[str, Any]:
    open_ = {"allow_subscribe_for_client": True, "allow_publish_for_client": True}
    namespaces = [{"name": name, "publication_data_format": fmt, **open_}
                  for name, fmt in (("js", "json"), ("obj", "json_object"), ("bin", "binary"))]
    namespaces.append({"name": "plain", **open_})
    return base_config(channel={"namespaces": namespaces, **channel})


async def test_protobuf_clients_publish_only_json_where_json_is_required() -> None:
    async with run_node(config()) as node, sdk_client(node, protobuf=True) as sdk:
        _, events = await sdk.subscribe("js:a")
        with pytest.raises(ReplyError) as error:
            await sdk.client.publish("js:a", b"\xff not json")
        assert error.value.code == 107
        await sdk.client.publish("js:a", b'{"ok": true}')
        assert (await next_event(events.publications)).data == b'{"ok": true}'
        await sdk.client.publish("bin:a", b"\xff not json")  # binary takes anything
        await sdk.client.publish("plain:a", b"\xff not json")  # "" only refuses empty data


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_json_object_namespaces_take_only_objects(protobuf: bool) -> None:
    async with run_node(config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        for value in ([1, 2], "text", 3):
            with pytest.raises(ReplyError) as error:
                await sdk.client.publish("obj:a", sdk.payload(value))
            assert error.value.code == 107
        await sdk.client.publish("obj:a", sdk.payload({"k": "v"}))


async def raw_publish(node: RunningNode, publish: dict[str, Any]) -> dict[str, Any]:
    """A JSON-protocol publish without an SDK (the SDKs always send data)."""
    async with node.session.ws_connect(node.ws_url) as ws:
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, "r")}}))
        await ws.receive_str(timeout=WAIT)
        await ws.send_str(json.dumps({"id": 2, "publish": publish}))
        reply: dict[str, Any] = json.loads(await ws.receive_str(timeout=WAIT))
        return reply


async def test_empty_data_is_refused_unless_binary() -> None:
    async with run_node(config()) as node:
        refused = await raw_publish(node, {"channel": "plain:a"})
        assert refused["error"]["code"] == 107
        assert await raw_publish(node, {"channel": "bin:a"}) == {"id": 2, "publish": {}}
        assert await raw_publish(node, {"channel": "plain:a", "data": None}) == {
            "id": 2, "publish": {}}  # JSON null is data


async def test_the_server_api_checks_the_same_formats() -> None:
    async with run_node(config()) as node:
        async def publish(channel: str, **data: Any) -> dict[str, Any]:
            status, body = await node.api("publish", {"channel": channel, **data})
            assert status == 200
            return dict(body)

        assert (await publish("obj:a", data=[1]))["error"]["code"] == 107
        assert "error" not in await publish("obj:a", data={"k": 1})
        assert (await publish("plain:a"))["error"]["message"] == "data required"
        assert "error" not in await publish("bin:a")


async def test_the_global_format_applies_where_a_namespace_sets_none() -> None:
    async with run_node(config(publication_data_format="json_object")) as node:
        _, body = await node.api("publish", {"channel": "plain:a", "data": [1]})
        assert body["error"]["code"] == 107
        _, body = await node.api("publish", {"channel": "js:a", "data": [1]})
        assert "error" not in body  # the namespace's own "json" wins
