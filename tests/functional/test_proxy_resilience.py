"""A slow or dead backend costs only its own callers: timeouts, the concurrency bound and
the circuit breaker, measured with the official Python SDK against a real HTTP backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from centrifuge import ReplyError

from tests.functional.conftest import base_config, run_node, sdk_client, wait_until
from tests.functional.proxy_backend import Backend, backend

TIMEOUT = 1.5  # the slow proxy's timeout: long next to a prompt answer, short for a test
PROMPT = 0.5  # generous for a loaded 2-core machine; a blocked loop would take TIMEOUT


def config(b: Backend, **slow: Any) -> dict[str, Any]:
    return base_config(
        proxies=[{"name": "slow", "endpoint": b.url("slow"), "timeout": f"{TIMEOUT}s", **slow},
                 {"name": "fast", "endpoint": b.url("fast")}],
        rpc={"namespaces": [{"name": "slow", "proxy_enabled": True, "proxy_name": "slow"},
                            {"name": "fast", "proxy_enabled": True, "proxy_name": "fast"}]},
        channel={"without_namespace": {"allow_publish_for_client": True}},
        monitor={"interval": "0.05s"})


def hanging(release: asyncio.Event) -> Any:
    async def answer(body: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}
    return answer


async def timed(coro: Any) -> float:
    started = time.perf_counter()
    await coro
    return time.perf_counter() - started


async def test_a_hanging_backend_costs_only_its_own_callers() -> None:
    release = asyncio.Event()
    async with backend() as b:
        b.answers["slow"] = hanging(release)
        b.answers["fast"] = {"result": {"data": {"ok": True}}}
        async with run_node(config(b)) as node, sdk_client(node) as first, \
                sdk_client(node, user="bob") as second:
            started = time.perf_counter()
            stuck = asyncio.create_task(first.client.rpc("slow:work", {}))
            await wait_until(lambda: "slow" in b.calls, "the slow call to reach the backend")
            # While it hangs: the other client, and the same client's other commands.
            assert await timed(second.client.publish("room", {"n": 1})) < PROMPT
            assert await timed(second.client.rpc("fast:x", {})) < PROMPT
            assert await timed(second.subscribe("other")) < PROMPT
            assert await timed(first.client.publish("room", {"n": 2})) < PROMPT
            assert not stuck.done()
            with pytest.raises(ReplyError) as error:
                await stuck
            elapsed = time.perf_counter() - started
            assert error.value.code == 100 and error.value.temporary
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2.0
            metrics = node.node.proxies.metrics
            assert metrics.errors[("slow", "rpc", "timeout")] == 1
            assert metrics.calls[("fast", "rpc")] == 1
            release.set()


async def test_calls_past_the_concurrency_bound_fail_at_once() -> None:
    release = asyncio.Event()
    async with backend() as b:
        b.answers["slow"] = hanging(release)
        async with run_node(config(b, max_in_flight=2, max_queued=1)) as node, \
                sdk_client(node) as client:
            calls = [asyncio.create_task(client.client.rpc("slow:x", {})) for _ in range(3)]
            await wait_until(lambda: len(b.calls["slow"]) == 2, "two calls in flight")
            proxy = node.node.proxies.snapshot()[0]
            await wait_until(lambda: node.node.proxies.snapshot()[0]["queued"] == 1)
            assert proxy["name"] == "slow" and proxy["in_flight"] == 2
            started = time.perf_counter()
            with pytest.raises(ReplyError) as overloaded:
                await client.client.rpc("slow:x", {})
            assert overloaded.value.code == 100 and time.perf_counter() - started < PROMPT
            assert node.node.proxies.metrics.errors[("slow", "rpc", "overloaded")] == 1
            release.set()  # the three others are answered now
            assert [r.data for r in await asyncio.gather(*calls)] == [None, None, None]
            assert len(b.calls["slow"]) == 3


async def test_breaker_opens_after_failures_and_half_opens() -> None:
    async with backend() as b:
        b.answers["slow"] = 500
        settings = {"breaker_failures": 3, "breaker_open_time": "0.5s"}
        async with run_node(config(b, **settings)) as node, sdk_client(node) as client:
            proxies = node.node.proxies

            async def code() -> int:
                with pytest.raises(ReplyError) as error:
                    await client.client.rpc("slow:x", {})
                return int(error.value.code)

            for _ in range(3):
                assert await code() == 100
            assert len(b.calls["slow"]) == 3
            assert proxies.snapshot()[0]["breaker"] == "open"
            assert await code() == 100  # refused without asking the backend
            assert len(b.calls["slow"]) == 3
            assert proxies.metrics.errors[("slow", "rpc", "breaker_open")] == 1
            board = node.node.metrics.board
            await wait_until(lambda: any(a.rule.name == "proxy_breaker_open"
                                         for a in board.active_alerts), "the breaker alert")
            # Half-open: one probe; it fails, so the breaker opens again.
            await wait_until(lambda: proxies.snapshot()[0]["breaker"] == "half_open")
            assert await code() == 100 and len(b.calls["slow"]) == 4
            assert proxies.snapshot()[0]["breaker"] == "open"
            # The backend recovers: the next probe closes the breaker.
            b.answers["slow"] = {"result": {"data": {"back": True}}}
            await wait_until(lambda: proxies.snapshot()[0]["breaker"] == "half_open")
            result = await client.client.rpc("slow:x", {})
            assert result.data == {"back": True}
            assert proxies.snapshot()[0]["breaker"] == "closed"
            assert proxies.snapshot()[0]["breaker_opens"] == 2
            await wait_until(lambda: not any(a.rule.name == "proxy_breaker_open"
                                             for a in board.active_alerts), "alert resolved")
