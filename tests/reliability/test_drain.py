"""Graceful drain: SIGTERM to ``chorus serve`` while a publisher is mid-stream.

Clients get close 3001 "shutdown" (reconnect elsewhere), the process exits 0 within its
deadline, and every publication the API acknowledged (200 with an offset) reached every
subscriber before its close frame: nothing acknowledged is lost. Run on both WebSocket
readers: detached from aiohttp (the default) and aiohttp's own (``websocket.detach: false``).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from aiohttp import ClientError, ClientSession, WSMsgType

from broker.auth import make_token
from tests.functional.conftest import API_KEY, SECRET, WAIT, wait_until
from tests.reliability.helpers import serve

SHUTDOWN_TIMEOUT = 5.0
ADMIN_SECRET = "admin-secret-9f8e7d6c5b4a"
CHANNEL = "news:drain"


def drain_config(detach: bool = True) -> dict[str, object]:
    news = {"name": "news", "history_size": 10_000, "history_ttl": "300s",
            "allow_subscribe_for_client": True}
    return {"client": {"token": {"hmac_secret_key": SECRET}}, "http_api": {"key": API_KEY},
            "admin": {"secret": ADMIN_SECRET}, "channel": {"namespaces": [news]},
            "websocket": {"detach": detach},
            "chorus": {"shutdown_timeout": f"{SHUTDOWN_TIMEOUT}s"}}


class Subscriber:
    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.close: tuple[int | None, str] | None = None
        self.ready = asyncio.Event()

    async def run(self, session: ClientSession, port: int, user: str) -> None:
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        async with session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"id": 1, "connect": {"token": make_token(SECRET, user)}})
                              + "\n" + json.dumps({"id": 2, "subscribe": {"channel": CHANNEL}}))
            while True:
                message = await ws.receive()
                if message.type is not WSMsgType.TEXT:
                    break
                for line in message.data.splitlines():
                    reply = json.loads(line)
                    if reply.get("id") == 2:
                        self.ready.set()
                    pub = reply.get("push", {}).get("pub")
                    if pub is not None:
                        self.offsets.append(pub["offset"])
            reason = message.extra if message.type is WSMsgType.CLOSE else ""
            self.close = (ws.close_code, str(reason or ""))


async def publish_until_refused(session: ClientSession, port: int, acked: list[int]) -> None:
    """Publish back to back; keep the offsets of those acknowledged with 200 + offset."""
    n = 0
    while True:
        try:
            async with session.post(f"http://127.0.0.1:{port}/api/publish",
                                    json={"channel": CHANNEL, "data": {"n": n}},
                                    headers={"X-API-Key": API_KEY}) as response:
                body = await response.json()
        except (ClientError, OSError):
            return  # the listener is gone
        offset = body.get("result", {}).get("offset") if response.status == 200 else None
        if offset is None:
            return  # refused: the node is draining
        acked.append(offset)
        n += 1


@pytest.mark.slow
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "aiohttp-reader"])
async def test_sigterm_drains_without_losing_an_acknowledged_publication(
        tmp_path: Path, detach: bool) -> None:
    served = await serve(drain_config(detach), str(tmp_path))
    subscribers = [Subscriber() for _ in range(5)]
    acked: list[int] = []
    async with ClientSession() as session:
        tasks = [asyncio.create_task(s.run(session, served.port, f"u{i}"))
                 for i, s in enumerate(subscribers)]
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), WAIT)
        publisher = asyncio.create_task(publish_until_refused(session, served.port, acked))
        await wait_until(lambda: len(acked) >= 200, "the publisher to be mid-stream")
        loop = asyncio.get_running_loop()
        started = loop.time()
        served.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        returncode = await asyncio.wait_for(served.process.wait(), SHUTDOWN_TIMEOUT + 5)
        exit_after = loop.time() - started
        await asyncio.wait_for(publisher, WAIT)

    output = served.output()
    assert returncode == 0, output
    assert exit_after < SHUTDOWN_TIMEOUT + 2, f"exit took {exit_after:.1f}s"
    for sub in subscribers:
        assert sub.close is not None and sub.close[0] == 3001, sub.close
        assert sub.close[1] == "shutdown"
        missing = sorted(set(acked) - set(sub.offsets))
        assert not missing, f"acknowledged but never delivered: {missing[:10]}"
        assert sub.offsets == sorted(sub.offsets), "deliveries out of order"
    assert "drained" in output
    for secret in (SECRET, API_KEY, ADMIN_SECRET):
        assert secret not in output, "a secret was logged by chorus serve --log-level debug"
    print(f"\ndrain: {len(acked)} publications acknowledged, all delivered to "
          f"{len(subscribers)} subscribers; exit 0 after {exit_after:.2f}s")
