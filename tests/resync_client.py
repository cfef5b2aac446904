"""A raw JSON-protocol subscriber that keeps its subscription as the SDKs do.

It answers server pings, collects publications (``data["n"]`` with their offsets) and
keeps its position (offset, epoch). When the server asks it to resubscribe
("insufficient state", 2500) or closes the connection (e.g. 3004 after a failed engine
subscribe), it subscribes again — reconnecting first if needed — with ``recover`` from
its position, and notes whether that recovered. Tests then check "never a silent gap":
every acknowledged publication was received, or a resubscribe answered after it said
``recovered: false``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["ResyncingSubscriber"]

INSUFFICIENT_STATE = 2500
_RETRY_PAUSE = 0.2  # before a retried subscribe or a reconnect, as the SDKs back off


@dataclass
class ResyncingSubscriber:
    session: aiohttp.ClientSession
    url: str
    channel: str
    ws: aiohttp.ClientWebSocketResponse | None = None
    epoch: str = ""
    offset: int = 0
    pubs: list[tuple[int, int]] = field(default_factory=list)  # (offset, data["n"])
    epochs: list[str] = field(default_factory=list)  # the subscription's epoch per pub
    resyncs: list[tuple[float, bool]] = field(default_factory=list)  # (answered, recovered)
    reconnects: int = 0
    other: list[dict[str, Any]] = field(default_factory=list)  # unexpected pushes
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 1

    @property
    def received(self) -> list[int]:
        return [n for _, n in self.pubs]

    async def start(self) -> None:
        """Connect and subscribe; returns once subscribed (raises on an error reply)."""
        ws = self.ws = await self.session.ws_connect(self.url)
        await ws.send_str(self._connect() + "\n" + self._subscribe(recover=False))
        answered: dict[int, dict[str, Any]] = {}
        while len(answered) < 2:
            message = await ws.receive(timeout=10)
            for line in message.data.split("\n"):
                reply = orjson.loads(line) if line else {}
                answered[reply.get("id", 0)] = reply
        assert all("error" not in reply for reply in answered.values()), answered
        result = answered[max(answered)]["subscribe"]
        self.epoch, self.offset = result.get("epoch", ""), result.get("offset", 0)

    async def read(self) -> None:
        """Until cancelled: handle what arrives, reconnect when the server closes."""
        while True:
            assert self.ws is not None
            async for message in self.ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                for line in message.data.split("\n"):
                    if line:
                        await self._handle(orjson.loads(line))
            await asyncio.sleep(_RETRY_PAUSE)
            self.reconnects += 1
            self.ws = await self.session.ws_connect(self.url)
            await self.ws.send_str(self._connect() + "\n" + self._subscribe(recover=True))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    def told_missed_after(self, when: float) -> bool:
        """A resubscribe answered ``recovered: false`` after ``when``."""
        return any(at > when and not recovered for at, recovered in self.resyncs)

    def silently_lost(self, acked: dict[int, float]) -> list[int]:
        """Acknowledged publications (n -> when acknowledged) neither received nor
        followed by a resubscribe that answered ``recovered: false``."""
        received = set(self.received)
        return sorted(n for n, when in acked.items()
                      if n not in received and not self.told_missed_after(when))

    def offsets_by_epoch(self) -> dict[str, list[int]]:
        by_epoch: dict[str, list[int]] = {}
        for (offset, _), epoch in zip(self.pubs, self.epochs, strict=True):
            by_epoch.setdefault(epoch, []).append(offset)
        return by_epoch

    async def _handle(self, reply: dict[str, Any]) -> None:
        assert self.ws is not None
        if reply == {}:
            await self.ws.send_str("{}")  # pong
        elif "pub" in reply.get("push", {}):
            self._publication(reply["push"]["pub"])
        elif "connect" in reply:
            pass
        elif "subscribe" in reply:  # a resubscribe's answer
            result = reply["subscribe"]
            self.resyncs.append((time.monotonic(), bool(result.get("recovered"))))
            self.epoch = result.get("epoch", "")
            for pub in result.get("publications", []):
                self._publication(pub)
            self.offset = result.get("offset", self.offset)
        elif reply.get("error", {}).get("temporary"):
            await asyncio.sleep(_RETRY_PAUSE)
            await self.ws.send_str(self._subscribe(recover=True))
        elif reply.get("push", {}).get("unsubscribe", {}).get("code") == INSUFFICIENT_STATE:
            await self.ws.send_str(self._subscribe(recover=True))
        else:
            self.other.append(reply)

    def _publication(self, pub: dict[str, Any]) -> None:
        self.pubs.append((pub.get("offset", 0), pub["data"]["n"]))
        self.epochs.append(self.epoch)
        self.offset = pub.get("offset", self.offset)
        self.arrived.set()

    def _connect(self) -> str:
        self._next_id += 1
        return orjson.dumps({"id": self._next_id, "connect": {}}).decode()

    def _subscribe(self, *, recover: bool) -> str:
        self._next_id += 1
        params: dict[str, Any] = {"channel": self.channel, "recoverable": True}
        if recover:
            params.update(recover=True, offset=self.offset, epoch=self.epoch)
        return orjson.dumps({"id": self._next_id, "subscribe": params}).decode()
