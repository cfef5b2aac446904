"""The runtime's book of live actors: addresses by stable id, and what introspection shows.

Thespian gives a restarted actor a new, unhashable ``ActorAddress``; everything else in
the runtime names actors by their stable id (a path such as ``root/shards/shard-3``) and
resolves the current address here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.cell import Cell
    from actors.supervisor import Restart


@dataclass(slots=True)
class Failure:
    """The last failure of an actor id (survives its restarts)."""

    at: float  # wall-clock unix seconds
    reason: str
    traceback: str


@dataclass(slots=True)
class ActorRecord:
    """Live facts about one actor id; its cell updates them in place (no messages)."""

    id: str
    kind: str
    parent: str | None
    restart: Restart | None = None  # from the child spec: what its supervisor does on exit
    state: str = "starting"  # starting | running | stopping | failed | stopped
    restarts: int = 0
    messages: int = 0
    started_at: float = field(default_factory=time.time)
    last_failure: Failure | None = None
    cell: Cell | None = None
    address: Any = None

    def snapshot(self) -> dict[str, Any]:
        failure = self.last_failure
        return {
            "id": self.id,
            "kind": self.kind,
            "parent": self.parent,
            "restart": None if self.restart is None else self.restart.value,
            "state": self.state,
            "restarts": self.restarts,
            "messages": self.messages,
            "mailbox": None,  # simpleSystemBase has one shared queue, no per-actor mailbox
            "started_at": self.started_at,
            "last_failure": None
            if failure is None
            else {"at": failure.at, "reason": failure.reason, "traceback": failure.traceback},
        }


class Registry:
    """Live actors by id, with history (restarts, failures) that outlives incarnations."""

    def __init__(self) -> None:
        self._records: dict[str, ActorRecord] = {}
        self._history: dict[str, tuple[int, Failure | None]] = {}

    def add(self, record: ActorRecord) -> None:
        restarts, failure = self._history.get(record.id, (0, None))
        record.restarts = restarts
        record.last_failure = failure
        self._records[record.id] = record

    def remove(self, actor_id: str, record: ActorRecord) -> None:
        """Forget ``record`` if it is still the current incarnation of ``actor_id``."""
        if self._records.get(actor_id) is record:
            del self._records[actor_id]

    def note_restart(self, actor_id: str) -> None:
        restarts, failure = self._history.get(actor_id, (0, None))
        self._history[actor_id] = (restarts + 1, failure)

    def note_failure(self, actor_id: str, failure: Failure) -> None:
        restarts, _ = self._history.get(actor_id, (0, None))
        self._history[actor_id] = (restarts, failure)
        record = self._records.get(actor_id)
        if record is not None:
            record.last_failure = failure

    def forget_history(self, actor_id: str) -> None:
        """Drop restart history of an id whose spec is gone (temporary children)."""
        self._history.pop(actor_id, None)

    def get(self, actor_id: str) -> ActorRecord | None:
        return self._records.get(actor_id)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, actor_id: object) -> bool:
        return actor_id in self._records

    def ids(self) -> list[str]:
        return list(self._records)

    def children_of(self, actor_id: str) -> list[ActorRecord]:
        return [r for r in self._records.values() if r.parent == actor_id]

    def tree(self, root_id: str | None = None) -> list[dict[str, Any]]:
        """Nested snapshots: each node has its record fields plus ``children``."""
        by_parent: dict[str | None, list[ActorRecord]] = {}
        for record in self._records.values():
            by_parent.setdefault(record.parent, []).append(record)

        def build(record: ActorRecord) -> dict[str, Any]:
            node = record.snapshot()
            node["children"] = [build(c) for c in by_parent.get(record.id, [])]
            return node

        if root_id is not None:
            root = self._records.get(root_id)
            return [] if root is None else [build(root)]
        return [build(r) for r in by_parent.get(None, [])]
