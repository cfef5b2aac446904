"""The README's proxy section as written: its YAML loads, and its aiohttp RPC handler,
run as the backend, answers an SDK's RPC through the proxy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from centrifuge import ReplyError

from broker.config import config_from_mapping
from tests.functional.conftest import base_config, free_port, run_node, sdk_client

README = Path(__file__).resolve().parents[2] / "README.md"


def section_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## The application's backend in the loop")
    end = text.index("\n## ", start + 1)
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], re.S)


def test_the_readme_proxy_config_loads() -> None:
    [block] = section_blocks("yaml")
    config = config_from_mapping(yaml.safe_load(block))
    assert config.client.proxy.connect.http_headers == ("Cookie",)
    chat = config.channel_options("chat:x")
    assert chat is not None and chat.publish_proxy_name == "moderation"
    assert config.rpc.options("app:sum") is not None


async def test_the_readme_aiohttp_rpc_handler_answers_through_the_proxy() -> None:
    aiohttp_block = next(b for b in section_blocks("python") if "web.json_response" in b)
    scope: dict[str, Any] = {}
    exec(compile(aiohttp_block, "README.md", "exec"), scope)  # the snippet as written
    runner = web.AppRunner(scope["app"], access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = base_config(rpc={"proxy": {"endpoint": f"http://127.0.0.1:{port}/centrifugo/rpc"},
                                  "namespaces": [{"name": "app", "proxy_enabled": True}]})
        async with run_node(config) as node, sdk_client(node) as client:
            assert (await client.client.rpc("app:sum", {"a": 2, "b": 3})).data == {"sum": 5}
            with pytest.raises(ReplyError) as error:
                await client.client.rpc("app:other", {})
            assert (error.value.code, error.value.message) == (404, "no such method")
    finally:
        await runner.cleanup()
