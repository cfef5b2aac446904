"""Pusher webhooks: batched, signed as Pusher signs them, retried, never blocking the loop.

Each app's events are collected for ``BATCH_DELAY`` and sent as one POST per webhook
URL: ``{"time_ms": <now>, "events": [{"name": ..., "channel": ..., ...}]}`` with the
headers ``X-Pusher-Key`` (the app key) and ``X-Pusher-Signature`` (HMAC-SHA256 of the
body with the app secret, hex) — what the official libraries' ``validate_webhook``
checks. A webhook gets only the ``event_types`` it names.

Events: ``channel_occupied``/``channel_vacated`` (cluster wide: the first node in / the
last node out of a channel sends it, decided by the engine, see
``broker.pusher.occupancy``), ``member_added``/``member_removed`` (cluster wide: decided
against the engine's presence, see ``broker.pusher.actor``), ``client_event``.

Error handling: a delivery that fails (connection error, timeout, non-2xx) is retried
``RETRIES`` times with doubling backoff, then dropped with a warning naming the URL.
Sending runs as node tasks (``Node.spawn``); the loop never waits on a webhook.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from broker.pusher.sign import hmac_hex

if TYPE_CHECKING:
    from broker.config.pusher import PusherApp, PusherWebhook
    from broker.node import Node

__all__ = ["WebhookSender"]

log = logging.getLogger("chorus.pusher.webhooks")

BATCH_DELAY = 0.05  # seconds events wait to share one request
RETRIES = 3
FIRST_BACKOFF = 0.5
TIMEOUT = 5.0


class WebhookSender:
    """Collects webhook events per app and posts them in batches (see module docstring)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.pending: dict[str, tuple[PusherApp, list[dict[str, Any]]]] = {}
        self.sent = 0
        self.failed = 0
        # (app id, "sent" | "failed") -> POSTs: chorus_pusher_webhooks{app,result}
        self.results: Counter[tuple[str, str]] = Counter()
        self._armed = False

    def add(self, app: PusherApp, event: dict[str, Any]) -> None:
        if not app.webhooks:
            return
        self.pending.setdefault(app.id, (app, []))[1].append(event)
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_later(BATCH_DELAY, self._flush)

    def channel_event(self, app: PusherApp, name: str, channel: str) -> None:
        self.add(app, {"name": name, "channel": channel})

    def member_event(self, app: PusherApp, name: str, channel: str, user_id: str) -> None:
        self.add(app, {"name": name, "channel": channel, "user_id": user_id})

    def client_event(self, app: PusherApp, channel: str, event: str, data: bytes,
                     socket_id: str, user_id: str | None) -> None:
        entry = {"name": "client_event", "channel": channel, "event": event,
                 "data": data.decode(), "socket_id": socket_id}
        if user_id:
            entry["user_id"] = user_id
        self.add(app, entry)

    def _flush(self) -> None:
        self._armed = False
        pending, self.pending = self.pending, {}
        for app, events in pending.values():
            for hook in app.webhooks:
                wanted = [e for e in events if e["name"] in hook.event_types]
                if wanted:
                    self.node.spawn(self._post(app, hook, wanted))

    async def _post(self, app: PusherApp, hook: PusherWebhook,
                    events: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"time_ms": int(time.time() * 1000), "events": events})
        headers = {"Content-Type": "application/json", "X-Pusher-Key": app.key,
                   "X-Pusher-Signature": hmac_hex(app.secret, body)}
        delay = FIRST_BACKOFF
        for attempt in range(RETRIES + 1):
            try:
                async with aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session, \
                        session.post(hook.url, data=body, headers=headers) as response:
                    if response.status < 300:
                        self.sent += 1
                        self.results[app.id, "sent"] += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                problem = repr(error)
            if attempt < RETRIES:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1
        self.results[app.id, "failed"] += 1
        log.warning("pusher webhook %s for app %s dropped after %d attempts: %s",
                    hook.url, app.id, RETRIES + 1, problem)
