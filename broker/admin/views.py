"""Read-only views for the admin API: what the console shows, bounded in size.

Every list is capped (``LIST_CAP``) and says how many there were in total, so a node
with 100K connections answers the console's 2-second poll with a small document.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from broker.monitor.health import readiness
from broker.shard.actor import ChannelSummary

if TYPE_CHECKING:
    from broker.node import Node

LIST_CAP = 500
TREE_CHILDREN_CAP = 200
PRESENCE_CAP = 100
HISTORY_PREVIEW = 5
CHART_METRICS = ("connections", "subscriptions", "publications_rate", "deliveries_rate",
                 "commands_rate", "loop_lag", "rss_bytes", "open_files")


def trimmed_tree(tree: list[dict[str, Any]], cap: int = TREE_CHILDREN_CAP) -> list[dict[str, Any]]:
    """The tree with at most ``cap`` children per node; ``children_total`` tells the rest."""
    out = []
    for node in tree:
        children = node.get("children", [])
        node = {**node, "children": trimmed_tree(children[:cap], cap),
                "children_total": len(children)}
        out.append(node)
    return out


def connections(node: Node) -> dict[str, Any]:
    conns = sorted(node.connections.values(), key=lambda c: c.connected_at)
    return {"total": len(conns), "connections": [c.health() for c in conns[:LIST_CAP]]}


async def channel_counts(node: Node) -> dict[str, int]:
    """``{channel: local subscribers}`` from every shard (one ask per shard)."""
    found: dict[str, int] = {}
    for shard_id in node.shard_ids:
        found.update(await node.runtime.ask(shard_id, ChannelSummary(), timeout=2.0))
    return found


async def channels(node: Node) -> dict[str, Any]:
    counts = await channel_counts(node)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"total": len(counts), "channels": [
        {"name": name, "namespace": node.config.namespace_of(name), "subscribers": count,
         "shard": node.shard_of(name)} for name, count in ordered[:LIST_CAP]]}


def _preview(data: bytes, limit: int = 200) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "…"


async def channel_detail(node: Node, name: str) -> dict[str, Any]:
    """Options, local subscribers, presence and a history summary of one channel."""
    options = node.config.channel_options(name)
    effective = options or node.options(name)
    summary = await node.runtime.ask(node.shard_ids[node.shard_of(name)], ChannelSummary(),
                                     timeout=2.0)
    out: dict[str, Any] = {
        "name": name, "namespace": node.config.namespace_of(name),
        "known_namespace": options is not None, "shard": node.shard_of(name),
        "subscribers": summary.get(name, 0),
        "options": {f.name: getattr(effective, f.name)  # the config keys, not derived state
                    for f in dataclasses.fields(effective) if f.init},
        "presence": None, "history": None}
    if effective.presence:
        presence = await node.engine.presence(name)
        clients, users = await node.engine.presence_stats(name)
        out["presence"] = {"num_clients": clients, "num_users": users, "clients": [
            {"client": cid, "user": info.user}
            for cid, info in list(presence.items())[:PRESENCE_CAP]]}
    if effective.history_size > 0:
        pubs, top = await node.engine.history(name, limit=HISTORY_PREVIEW, reverse=True,
                                              history_ttl=effective.history_ttl)
        out["history"] = {"offset": top.offset, "epoch": top.epoch,
                          "size": effective.history_size, "ttl": effective.history_ttl,
                          "latest": [{"offset": p.offset, "time": p.time,
                                      "data": _preview(p.data)} for p in pubs]}
    return out


def nodes(node: Node) -> dict[str, Any]:
    board = node.metrics.board
    registry = node.runtime.registry
    records = [r for r in (registry.get(i) for i in registry.ids()) if r is not None]
    info = {**node.local_info(), "engine": node.engine.name, "draining": node.draining,
            "actor_restarts": board.restarts.update(records).copy(),
            "readiness": readiness(node), "sample": board.latest,
            "sampled_at": board.taken_at, "chart": board.chart_series(CHART_METRICS),
            "allow_crash_actor": node.config.admin.allow_crash_actor,
            "cache": node.cache.as_dict()}
    others = [{**n, "remote": True} for n in node.directory.alive(time.time())]
    return {"nodes": [info, *others]}


def alerts(node: Node) -> dict[str, Any]:
    board = node.metrics.board
    monitor = node.config.monitor
    return {"active": [a.to_dict() for a in board.active_alerts],
            "recent": [a.to_dict() for a in reversed(board.recent_alerts)],
            "rules": list(monitor.alerts),
            "webhook": {"configured": bool(monitor.webhook_url), "sent": board.webhook_sent,
                        "failed": board.webhook_failed}}


def proxies(node: Node) -> dict[str, Any]:
    """Every proxy and hook: endpoint, breaker, in flight, and calls, errors (by reason)
    and mean latency per event kind."""
    return {"proxies": node.proxies.snapshot()}


def consumers(node: Node) -> dict[str, Any]:
    """The async consumers' counters (``consumers`` in the config), this node's view."""
    return {"consumers": node.consumers.as_list()}


def pusher(node: Node) -> dict[str, Any]:
    """Pusher apps on this node: sockets, counters and occupied channels (capped)."""
    from broker.pusher.state import local_channels, pusher_state

    state = pusher_state(node)
    channels = local_channels(node)
    hooks = state.webhooks
    apps = []
    for app in node.config.pusher.apps:
        counts: dict[str, int] = channels.get(app.id, {})
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        apps.append({
            "id": app.id, "key": app.key, "connections": state.connections(app.id),
            "client_events": state.events_in[app.id], "api_calls": state.api_calls[app.id],
            "webhooks": {r: hooks.results[app.id, r] if hooks else 0 for r in ("sent", "failed")},
            "channels_total": len(counts),
            "channels": [{"name": name, "subscribers": count}
                         for name, count in ordered[:LIST_CAP]]})
    return {"apps": apps}
