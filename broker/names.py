"""Stable ids of the node's supervision tree (declared in ``broker.tree``), in one place.

Actors are addressed by id (a thespian address changes on every restart), so every
module that tells a shard, a connection or a monitor builds its id from here.
"""

from __future__ import annotations

ROOT_ID = "chorus"
ENGINE_SUPERVISOR = "engine"
SHARDS_SUPERVISOR = "shards"
CONNECTIONS_SUPERVISOR = "connections"
MONITORS_SUPERVISOR = "monitors"
CONSUMERS_SUPERVISOR = "consumers"

ENGINE_ID = f"{ROOT_ID}/{ENGINE_SUPERVISOR}"
SHARDS_ID = f"{ROOT_ID}/{SHARDS_SUPERVISOR}"
CONNECTIONS_ID = f"{ROOT_ID}/{CONNECTIONS_SUPERVISOR}"
MONITORS_ID = f"{ROOT_ID}/{MONITORS_SUPERVISOR}"
CONSUMERS_ID = f"{ROOT_ID}/{CONSUMERS_SUPERVISOR}"

NODE_MONITOR_ID = f"{MONITORS_ID}/node"
ALERTS_ID = f"{MONITORS_ID}/alerts"
JOURNAL_ID = f"{MONITORS_ID}/journal"


def shard_name(index: int) -> str:
    """The child id of shard ``index`` under the shard supervisor."""
    return f"shard-{index}"


def connection_id(client_id: str) -> str:
    """The id of the connection actor of ``client_id``."""
    return f"{CONNECTIONS_ID}/{client_id}"


def consumer_id(name: str) -> str:
    """The id of the actor that owns consumer ``name`` (``consumers[].name``)."""
    return f"{CONSUMERS_ID}/{name}"
