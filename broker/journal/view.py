"""What the admin API, the server API and the JSON Lines export serve of journeys.

A user's journey is their events from the store (every node's, on Redis), oldest first,
with each ``reconnect`` told what the reconnect missed: the publications replayed by the
recovering subscribes of that connection, and the channels that could not be recovered
(``recovered: false``). The funnel of a user or of the node counts connections:
connected → subscribed → first publication received.

Error handling: ``JourneysOff`` when ``journeys.enabled`` is false; store errors
propagate (the routes answer 502 / error 100).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from broker.journal.actor import JourneyBoard
    from broker.node import Node

Event = dict[str, Any]
DEFAULT_LIMIT = 200
MAX_LIMIT = 10_000


class JourneysOff(Exception):
    """Journeys are disabled on this node (``journeys.enabled: false``)."""


def board_of(node: Node) -> JourneyBoard:
    if node.journeys is None:
        raise JourneysOff("journeys are disabled (journeys.enabled: false)")
    return node.journeys


def clamp_limit(raw: Any) -> int:
    """A read's ``limit``: a positive int up to ``MAX_LIMIT`` (default ``DEFAULT_LIMIT``).
    Raises ValueError for anything else."""
    if raw in (None, ""):
        return DEFAULT_LIMIT
    limit = int(raw)
    if limit < 1:
        raise ValueError("limit must be a positive integer")
    return min(limit, MAX_LIMIT)


def annotate(events: list[Event]) -> list[Event]:
    """``events`` with a ``missed`` summary on each reconnect (copies, oldest first)."""
    out = [dict(e) for e in events]
    for index, event in enumerate(out):
        if event.get("event") != "reconnect":
            continue
        client = event.get("client")
        replayed = 0
        recovered: list[str] = []
        unrecovered: list[str] = []
        for later in out[index + 1:]:
            if later.get("client") != client:
                continue
            if later.get("event") == "disconnect":
                break
            if later.get("event") == "subscribe" and later.get("recovering"):
                replayed += int(later.get("replayed") or 0)
                (recovered if later.get("recovered") else unrecovered).append(later["channel"])
        event["missed"] = {"publications_replayed": replayed, "recovered": recovered,
                           "unrecovered": unrecovered}
    return out


def funnel(events: Iterable[Event]) -> dict[str, int]:
    """Connections of ``events`` that connected, subscribed, got a first publication."""
    connected: set[str] = set()
    subscribed: set[str] = set()
    first: set[str] = set()
    for event in events:
        kind, client = event.get("event"), str(event.get("client", ""))
        if kind == "connect":
            connected.add(client)
        elif kind == "subscribe":
            subscribed.add(client)
            if event.get("replayed"):
                first.add(client)
        elif kind == "first_publication":
            first.add(client)
    return {"connected": len(connected), "subscribed": len(subscribed & connected),
            "first_publication": len(first & connected)}


def sessions(events: Iterable[Event]) -> list[dict[str, Any]]:
    """One row per connection of ``events``: where, how, how long, how it ended."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        client = str(event.get("client", ""))
        kind = event.get("event")
        if kind == "connect":
            rows[client] = {"client": client, "node": event.get("node", ""),
                            "transport": event.get("transport", ""),
                            "protocol": event.get("protocol", ""),
                            "sdk": event.get("sdk", ""),
                            "sdk_version": event.get("sdk_version", ""),
                            "connected_at": event["t"],
                            "time_to_connect": event.get("time_to_connect"),
                            "subscriptions": 0, "disconnected_at": None, "code": None}
        row = rows.get(client)
        if row is None:
            continue
        if kind == "subscribe":
            row["subscriptions"] += 1
        elif kind == "reconnect":
            row["time_away"] = event.get("time_away")
        elif kind == "disconnect":
            row.update(disconnected_at=event["t"], code=event.get("code"),
                       reason=event.get("reason", ""))
    return list(rows.values())


async def user_journey(node: Node, user: str, limit: int) -> dict[str, Any]:
    """The user's journey across nodes: events, sessions, funnel."""
    events = annotate(await board_of(node).store.user_events(user, limit))
    return {"user": user, "events": events, "sessions": sessions(events),
            "funnel": funnel(events)}


async def overview(node: Node, limit: int) -> dict[str, Any]:
    """This node's aggregates and the latest events of every user."""
    import time

    board = board_of(node)
    events = await board.store.recent(limit)
    return {"node": node.name, "summary": board.state.summary(time.time()),
            "journal": board.counters(), "events": events}


async def read(node: Node, user: str, limit: int) -> dict[str, Any]:
    """What ``GET /admin/api/journeys`` and the ``journeys`` API method answer: the
    user's journey (with ``user``) plus the node's aggregates, or the overview."""
    if not user:
        return await overview(node, limit)
    journey = await user_journey(node, user, limit)
    journey["summary"] = (await overview(node, 1))["summary"]
    return journey


async def jsonl(node: Node, user: str, limit: int) -> bytes:
    """Events as JSON Lines (one event per line, oldest first) for offline analysis."""
    board = board_of(node)
    if user:
        events = annotate(await board.store.user_events(user, limit))
    else:
        events = await board.store.recent(limit)
    return b"".join(orjson.dumps(e) + b"\n" for e in events)
