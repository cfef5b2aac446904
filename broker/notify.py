"""Durable per-user notifications: the inbox contract and the node-side service.

A notification is stored durably by a ``NotificationStore`` (memory, or a Redis stream
per user ``<prefix>:notify:{<user>}``) and delivered live as a publication in the user's
personal channel (``[<personal_channel_namespace>:]#<user>``). The publication's data is::

    {"notification": {"id": "...", "type": "...", "payload": <any JSON>, "time": ms,
                      "read": false, "expire_at": ms-or-0}}

A user who was offline gets the unread ones *on connect*, as publications of the same
shape in their personal channel, written to that connection right after the connect
reply (only when the connection is subscribed to its personal channel, i.e. with
``client.subscribe_to_user_personal_channel.enabled``). Delivery on connect is
at-least-once: a notification stored while the unread list is being read may arrive
twice (live and from the list); clients de-duplicate by ``id``. Live delivery is
at-most-once (like every publication); the store is the durable record, so the live
publication skips the channel's history.

Retention: at most ``retention_count`` per user (the oldest go first) and none older
than ``retention_age``; a notification with ``ttl`` is gone after it. Ids are stream
ids (``<ms>-<seq>``), increasing per user, so listing order is id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from broker.node import Node

__all__ = [
    "Notification",
    "NotificationStore",
    "Notifier",
    "notification_dict",
    "parse_id",
]


@dataclass(frozen=True, slots=True)
class Notification:
    """One stored notification; ``payload`` is raw JSON; times are unix ms (0 = none)."""

    id: str
    user: str
    type: str
    payload: bytes
    time: int
    expire_at: int = 0
    read: bool = False


def notification_dict(n: Notification) -> dict[str, Any]:
    """The wire shape (API, RPC, publications); ``payload`` stays raw JSON bytes."""
    return {"id": n.id, "type": n.type, "payload": orjson.Fragment(n.payload),
            "time": n.time, "read": n.read, "expire_at": n.expire_at}


def parse_id(text: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a sortable pair. Error handling: ValueError if malformed."""
    ms, sep, seq = text.partition("-")
    if not sep:
        raise ValueError(f"bad notification id {text!r}")
    return int(ms), int(seq)


class NotificationStore(Protocol):
    """Per-user durable inbox. Every implementation states conformance for mypy."""

    async def add(self, user: str, payload: bytes, *, type: str = "",
                  ttl: float = 0.0) -> Notification:
        """Store durably before returning (on Redis: on the primary).

        Ids increase per user. Retention is applied in the same step: the user keeps at
        most ``retention_count`` notifications and none older than ``retention_age``.
        ``ttl`` > 0: the notification is never listed after ``ttl`` seconds.
        Error handling: raises EngineError on a temporary failure (stored or not: unknown).
        """
        ...

    async def list(self, user: str, *, unread_only: bool = False,
                   limit: int = 0) -> list[Notification]:
        """The user's live notifications, oldest first; ``limit`` > 0 keeps the newest
        ``limit``. Never returns an expired one. May lag the primary when served from a
        replica. Error handling: EngineError on a temporary failure."""
        ...

    async def mark_read(self, user: str, ids: Sequence[str]) -> int:
        """Mark ``ids`` read; returns how many of them exist and were unread.
        Idempotent; unknown ids are ignored. Error handling: EngineError."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""


class Notifier:
    """The node's notification service: store, then deliver live (see module doc)."""

    def __init__(self, node: Node, store: NotificationStore) -> None:
        self.node = node
        self.store = store

    def personal_channel(self, user: str) -> str:
        """The user's personal channel, whether or not clients are auto-subscribed."""
        config = self.node.config
        namespace = config.client.subscribe_to_user_personal_channel.personal_channel_namespace
        prefix = f"{namespace}{config.channel.namespace_boundary}" if namespace else ""
        return f"{prefix}{config.channel.user_boundary}{user}"

    @staticmethod
    def publication_data(n: Notification) -> bytes:
        return orjson.dumps({"notification": notification_dict(n)})

    async def notify(self, user: str, payload: bytes, *, type: str = "",
                     ttl: float = 0.0) -> Notification:
        """Store, then publish into the personal channel (every node's connections).

        Error handling: a store failure raises before anything is delivered; a failed
        live publish is logged by the caller's effect and the notification stays unread
        in the store (the user gets it on the next connect).
        """
        stored = await self.store.add(user, payload, type=type, ttl=ttl)
        await self.node.publish(self.personal_channel(user), self.publication_data(stored),
                                skip_history=True)
        return stored

    async def unread_frames(self, user: str) -> list[bytes]:
        """Publication data of every unread notification, oldest first (for connect)."""
        return [self.publication_data(n)
                for n in await self.store.list(user, unread_only=True)]

    async def rpc(self, method: str, user: str, data: bytes) -> bytes:
        """The client RPC ``notifications.list`` / ``notifications.mark_read``.

        Error handling: ValueError for malformed data (answered as bad request)."""
        params = orjson.loads(data or b"{}") if data and data != b"null" else {}
        if not isinstance(params, dict):
            raise ValueError("rpc data must be a JSON object")
        if method == "notifications.list":
            found = await self.store.list(user, unread_only=bool(params.get("unread_only")),
                                          limit=int(params.get("limit") or 0))
            return orjson.dumps({"notifications": [notification_dict(n) for n in found]})
        ids = params.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids: a list of notification ids required")
        return orjson.dumps({"marked": await self.store.mark_read(user, ids)})


RPC_METHODS = frozenset({"notifications.list", "notifications.mark_read"})
