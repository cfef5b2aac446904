"""Each transport section's ``handler_prefix`` and ``max_request_body_size`` do what they
say, on a real node: the endpoint moves (the default path is then 404) and a body over
the limit is refused with 413 naming the key."""

from __future__ import annotations

import pytest

from tests.functional.conftest import base_config, run_node

# section -> the method its body limit applies to (POST for every one of them)
SECTIONS = ["http_stream", "sse", "uni_sse", "uni_http_stream", "emulation"]
DEFAULTS = {"http_stream": "/connection/http_stream", "sse": "/connection/sse",
            "uni_sse": "/connection/uni_sse", "uni_http_stream": "/connection/uni_http_stream",
            "emulation": "/emulation"}


@pytest.mark.parametrize("section", SECTIONS)
async def test_handler_prefix_moves_the_endpoint_and_the_body_limit_refuses(
        section: str) -> None:
    enabled = {"http_stream": {"enabled": True}, "uni_sse": {"enabled": True},
               "uni_http_stream": {"enabled": True}, "sse": {"enabled": True}}
    own = {**enabled.get(section, {}), "handler_prefix": f"/custom/{section}",
           "max_request_body_size": 100}
    mapping = base_config(**{**enabled, section: own})
    async with run_node(mapping) as node:
        base = f"http://127.0.0.1:{node.port}"
        async with node.session.post(f"{base}{DEFAULTS[section]}", data=b"{}") as moved:
            assert moved.status == 404
        async with node.session.post(f"{base}/custom/{section}", data=b"x" * 101) as big:
            assert big.status == 413
            assert f"{section}.max_request_body_size" in await big.text()
