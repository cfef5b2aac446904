"""centrifuge-js (npm, run by Node.js) through event proxies, over JSON and protobuf:
connect without a JWT, refused and allowed by the subscribe proxy, its publication
rewritten by the publish proxy, an RPC answered by the backend; its emulated headers
reach the connect proxy where ``emulated_headers`` lists them. Needs ``node`` and
``tests/js/node_modules`` (see tests/functional/test_node_sdk.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import WAIT, base_config, run_node
from tests.functional.proxy_backend import backend
from tests.functional.test_node_sdk import read_event

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not installed"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "centrifuge").is_dir(),
                       reason="the centrifuge npm SDK is not installed: "
                              "run `cd tests/js && npm install`"),
]


async def app(body: dict[str, Any]) -> dict[str, Any]:
    """The application: subscribe and publish decisions, by channel and payload."""
    if body["channel"] == "app:secret":
        return {"error": {"code": 403, "message": "members only"}}
    if "data" in body:  # a publication: rewritten
        return {"result": {"data": {"text": body["data"]["text"] + "!", "by": body["user"]}}}
    return {"result": {"data": {"welcome": body["channel"]}}}


async def rpc(body: dict[str, Any]) -> dict[str, Any]:
    return {"result": {"data": {"sum": body["data"]["a"] + body["data"]["b"]}}}


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_centrifuge_js_through_the_proxies(protobuf: bool) -> None:
    async with backend() as b:
        b.answers.update(connect={"result": {"user": "js-56", "data": {"hello": "js"}}},
                         app=app, rpc=rpc)
        config = base_config(
            client={"proxy": {"connect": {"enabled": True, "endpoint": b.url("connect"),
                                          "emulated_headers": ["X-Tenant"]}}},
            proxies=[{"name": "app", "endpoint": b.url("app")}],
            channel={"namespaces": [{"name": "app", "subscribe_proxy_enabled": True,
                                     "subscribe_proxy_name": "app",
                                     "publish_proxy_enabled": True,
                                     "publish_proxy_name": "app"}]},
            rpc={"proxy": {"endpoint": b.url("rpc")},
                 "namespaces": [{"name": "app", "proxy_enabled": True}]})
        async with run_node(config) as node:
            assert NODE is not None
            args = [str(JS_DIR / "proxy.mjs"), node.ws_url] + (["--protobuf"] if protobuf else [])
            process = await asyncio.create_subprocess_exec(
                NODE, *args, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            try:
                events = [await read_event(process) for _ in range(5)]
                assert await asyncio.wait_for(process.wait(), WAIT) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert events == [
            {"event": "connected", "data": {"hello": "js"}},
            {"event": "refused", "channel": "app:secret", "code": 403,
             "reason": "members only"},
            {"event": "subscribed", "channel": "app:open", "data": {"welcome": "app:open"}},
            {"event": "publication", "data": {"text": "hello!", "by": "js-56"}},
            {"event": "rpc", "data": {"sum": 5}},
        ]
        [connect] = b.calls["connect"]
        assert connect.headers["x-tenant"] == "acme"  # emulated, listed in emulated_headers
        assert connect.body["name"] == "js-proxy" and connect.body["data"] == {"sdk": "js"}
        assert connect.body["protocol"] == ("protobuf" if protobuf else "json")
        assert {c.body["user"] for c in b.calls["app"]} == {"js-56"}
