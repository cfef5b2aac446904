"""Client RPC with the official Python SDK, over JSON and protobuf, against handlers
registered with ``Chorus.rpc``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from centrifuge import ReplyError

from broker import Chorus
from tests.functional.conftest import base_config, run_node, sdk_client


def register(chorus: Chorus) -> None:
    @chorus.rpc("echo")
    async def echo(ctx: dict[str, Any], data: bytes) -> bytes:
        return data

    @chorus.rpc("whoami")
    async def whoami(ctx: dict[str, Any], data: bytes) -> bytes:
        return json.dumps({"user": ctx["user"], "client": ctx["client"]}).encode()

    @chorus.rpc("sum")
    async def total(ctx: dict[str, Any], data: bytes) -> bytes:
        return json.dumps(sum(json.loads(data))).encode()

    @chorus.rpc("boom")
    async def boom(ctx: dict[str, Any], data: bytes) -> bytes:
        raise RuntimeError("handler failed")


async def test_rpc_round_trips(protobuf: bool) -> None:
    async with run_node(base_config(), setup=register) as node, \
            sdk_client(node, protobuf=protobuf, user="caller") as sdk:
        payload = {"nested": [1, {"two": 2}], "text": "héllo"}
        echoed = await sdk.client.rpc("echo", sdk.payload(payload))
        assert sdk.value(echoed.data) == payload
        assert sdk.value((await sdk.client.rpc("sum", sdk.payload([1, 2, 39]))).data) == 42
        me = sdk.value((await sdk.client.rpc("whoami", sdk.payload(None))).data)
        assert me == {"user": "caller", "client": sdk.client_id}


@pytest.mark.parametrize(("method", "code"), [("missing", 104), ("boom", 100)])
async def test_rpc_errors(protobuf: bool, method: str, code: int) -> None:
    async with run_node(base_config(), setup=register) as node, \
            sdk_client(node, protobuf=protobuf) as sdk:
        with pytest.raises(ReplyError) as error:
            await sdk.client.rpc(method, sdk.payload({}))
        assert error.value.code == code
        # the connection is still fine
        assert sdk.value((await sdk.client.rpc("echo", sdk.payload(1))).data) == 1
