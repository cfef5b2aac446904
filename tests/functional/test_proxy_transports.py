"""The connect proxy on transports other than the bidirectional WebSocket: every
transport that starts a connection forwards the request headers a proxy's
``http_headers`` names and reports its own transport name; a uni session refused by the
backend ends with the disconnect Centrifugo maps the error to (no reply to carry it)."""

from __future__ import annotations

import json
from typing import Any

from tests.functional.conftest import base_config, run_node
from tests.functional.proxy_backend import Backend, backend
from tests.functional.test_uni_transports import next_push, sse_events


def proxied(b: Backend) -> dict[str, Any]:
    connect = {"enabled": True, "endpoint": b.url("connect"), "http_headers": ["Cookie"]}
    return base_config(client={"proxy": {"connect": connect}}, uni_sse={"enabled": True},
                       channel={"namespaces": [{"name": "news"}]})


async def test_uni_sse_connects_through_the_proxy_with_the_request_headers() -> None:
    async with backend() as b:
        b.answers["connect"] = {"result": {"user": "56", "channels": ["news:today"]}}
        async with run_node(proxied(b)) as node:
            url = f"http://127.0.0.1:{node.port}/connection/uni_sse"
            params = {"cf_connect": json.dumps({})}
            headers = {"Cookie": "session=abc", "X-Other": "not forwarded"}
            async with node.session.get(url, params=params, headers=headers) as response:
                assert response.status == 200
                connect = (await next_push(sse_events(response)))["connect"]
                assert set(connect["subs"]) == {"news:today"}
                assert node.node.connections[connect["client"]].session.user == "56"
            [call] = b.calls["connect"]
            assert call.body["transport"] == "uni_sse"
            assert call.headers["cookie"] == "session=abc"
            assert "x-other" not in call.headers


async def test_uni_sse_refused_by_the_proxy_ends_with_the_mapped_disconnect() -> None:
    async with backend() as b:
        b.answers["connect"] = {"error": {"code": 103, "message": "permission denied"}}
        async with run_node(proxied(b)) as node:
            url = f"http://127.0.0.1:{node.port}/connection/uni_sse"
            params = {"cf_connect": json.dumps({})}
            async with node.session.get(url, params=params) as response:
                push = await next_push(sse_events(response))
                assert push["disconnect"]["code"] == 3507  # DISCONNECT_PERMISSION_DENIED
            assert len(b.calls["connect"]) == 1
