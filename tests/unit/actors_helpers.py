"""Shared pieces for the actor-runtime tests: a lifecycle-recording actor and a runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors import Actor, ChildSpec, Restart, Runtime
from actors.testing import ManualClock

Events = list[tuple[str, str]]


class Worker(Actor):
    """Keeps a counter (its state) and records lifecycle events into a shared list.

    Messages: "inc" adds one, "get" answers the count, "crash" raises, "stop" stops.
    """

    kind = "worker"

    def __init__(self, events: Events) -> None:
        self.events = events
        self.count = 0

    def on_start(self) -> None:
        self.events.append(("start", self.id))

    def on_stop(self) -> None:
        self.events.append(("stop", self.id))

    def receive(self, message: Any) -> Any:
        if message == "inc":
            self.count += 1
        elif message == "get":
            return self.count
        elif message == "crash":
            raise RuntimeError(f"{self.id} crashed on purpose")
        elif message == "stop":
            self.stop()
        else:
            return super().receive(message)
        return None


def worker(
    events: Events,
    child_id: str,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
) -> ChildSpec:
    return ChildSpec(child_id, lambda: Worker(events), restart=restart, shutdown=shutdown)


def make_runtime(
    clock: ManualClock | None = None,
    *,
    allow_crash: bool = True,
    on_root_failure: Callable[[Any], None] | None = None,
) -> Runtime:
    return Runtime(clock=clock or ManualClock(), allow_crash=allow_crash,
                   on_root_failure=on_root_failure)


def live_thespian_actors(runtime: Runtime) -> int:
    """Actors thespian still hosts (instances not yet removed), internal ones excluded."""
    base = runtime._system._systemBase
    if base is None:  # the thespian system itself is shut down: it hosts nothing
        return 0
    internal = set(base._internalAddresses)
    return sum(1 for key, ref in base.actorRegistry.items()
               if key not in internal and ref is not None and ref.instance is not None)


def count(runtime: Runtime, actor_id: str) -> int:
    """A Worker's counter, read through its cell (synchronous; no ask needed)."""
    record = runtime.registry.get(actor_id)
    assert record is not None and record.cell is not None
    behavior = record.cell.behavior
    assert isinstance(behavior, Worker)
    return behavior.count
