"""Readiness of a node: engine link up, supervision tree whole, not draining.

``GET /ready`` answers 200 only when every check passes, so a load balancer stops
sending new clients to a node that is draining, lost its engine, or whose tree is short
of a permanent actor (any shard, the engine link, a monitor, a supervisor: whatever the
supervisors' child specs declare permanent, see ``Runtime.missing_children``) or has a
supervisor that gave up. Liveness (``GET /health``) is only "the loop answers".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.node import Node

SUPERVISOR_KINDS = ("root", "supervisor")


def tree_problems(node: Node) -> list[str]:
    """What is wrong with the supervision tree; empty when it is healthy."""
    runtime = node.runtime
    if runtime.root_down is not None:
        return [f"root supervisor is down: {runtime.root_down!r}"]
    problems = [f"{actor_id} is not running" for actor_id in runtime.missing_children()]
    for actor_id in runtime.registry.ids():
        record = runtime.registry.get(actor_id)
        if record is not None and record.kind in SUPERVISOR_KINDS and record.state == "failed":
            problems.append(f"supervisor {actor_id} failed")
    return problems


def readiness(node: Node | None) -> dict[str, Any]:
    """``{"ready": bool, "checks": {...}, "problems": [...]}`` for ``GET /ready``."""
    if node is None:
        return {"ready": False, "checks": {"started": False}, "problems": ["starting"]}
    engine_up = bool(getattr(node.engine, "link_up", True))
    problems = tree_problems(node)
    checks = {"started": True, "engine_link": engine_up, "tree": not problems,
              "draining": node.draining}
    if not engine_up:
        problems.append("engine link is down")
    if node.draining:
        problems.append("draining")
    return {"ready": not problems, "checks": checks, "problems": problems}
