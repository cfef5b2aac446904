"""Headers emulation: the ``headers`` map an SDK sends in its connect command (browsers
cannot set WebSocket headers) is kept on the session and handed to RPC handlers as
``ctx["headers"]``. Raw JSON and protobuf clients here (centrifuge-python sends its
``headers`` option as real HTTP headers instead); centrifuge-js in test_node_sdk."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import WSMsgType

from broker import Chorus
from broker.auth import make_token
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, PROTOBUF_SUBPROTOCOL
from tests.functional.conftest import SECRET, WAIT, base_config, run_node, sdk_client

SENT = {"X-Tenant": "acme", "Authorization": "Bearer from-the-browser"}


def register(chorus: Chorus) -> None:
    @chorus.rpc("headers")
    async def headers(ctx: dict[str, Any], data: bytes) -> bytes:
        seen = dict(ctx["headers"])
        ctx["headers"]["x-tenant"] = "changed by the handler"  # a copy: harmless
        return json.dumps(seen).encode()


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_connect_headers_reach_rpc_handlers_and_stay_on_the_session(
        protobuf: bool) -> None:
    codec = PROTOBUF_CODEC if protobuf else JSON_CODEC
    async with run_node(base_config(), setup=register) as node:
        protocols = (PROTOBUF_SUBPROTOCOL,) if protobuf else ()
        async with node.session.ws_connect(node.ws_url, protocols=protocols) as ws:
            async def call(command: dict[str, Any]) -> dict[str, Any]:
                frame = codec.encode_command(command)
                await (ws.send_bytes(frame) if protobuf else ws.send_str(frame.decode()))
                message = await ws.receive(timeout=WAIT)
                assert message.type in (WSMsgType.TEXT, WSMsgType.BINARY)
                [reply] = codec.decode_replies(message.data)
                return reply

            connect = await call({"id": 1, "connect": {
                "token": make_token(SECRET, "hana"), "headers": SENT}})
            client_id = connect["connect"]["client"]
            expected = {"x-tenant": "acme", "authorization": "Bearer from-the-browser"}
            for cmd_id in (2, 3):  # the second call sees the session's, unchanged
                reply = await call({"id": cmd_id, "rpc": {"method": "headers",
                                                          "data": b"null"}})
                assert json.loads(reply["rpc"]["data"]) == expected
            assert node.node.connections[client_id].session.headers == expected


async def test_no_headers_sent_gives_an_empty_map() -> None:
    async with run_node(base_config(), setup=register) as node, sdk_client(node) as sdk:
        reply = await sdk.client.rpc("headers", None)
        assert sdk.value(reply.data) == {}
