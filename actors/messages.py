"""System messages exchanged between actor cells and supervisors.

User messages are any Python object; these are the runtime's own, recognised by exact
type in the cell's dispatch (a set lookup, so the hot path pays almost nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from actors.actor import Actor
    from actors.loop import Runtime
    from actors.supervisor import Restart


@dataclass(slots=True)
class Init:
    """First message of every cell: who it is and how to build its behaviour."""

    runtime: Runtime
    actor_id: str
    kind: str
    parent_id: str | None
    factory: Callable[[], Actor]
    incarnation: int = 0
    restart: Restart | None = None  # the child spec's restart type (introspection, stop)


@dataclass(slots=True)
class Envelope:
    """A message sent with ``ask``: the reply resolves ``future`` on the loop."""

    message: Any
    future: asyncio.Future[Any]


@dataclass(slots=True)
class EffectDone:
    """An effect's coroutine finished; delivered back to the actor that started it."""

    effect_id: int
    result: Any
    error: BaseException | None


@dataclass(slots=True)
class TimerFired:
    """A timer of the actor fired: ``message`` is what it was set to deliver."""

    timer_id: int
    message: Any


@dataclass(slots=True)
class StopRequest:
    """Ask a cell to stop gracefully (its ``on_stop`` runs, then it exits)."""

    reason: str = "shutdown"


@dataclass(slots=True)
class Kill:
    """Stop a cell at once: no ``on_stop``; effects and timers are cancelled."""

    reason: str = "killed"


@dataclass(slots=True)
class CrashRequest:
    """Make the cell fail as if its code raised (``Runtime.crash_actor``)."""

    reason: str = "crash injected"


@dataclass(slots=True)
class ChildFailed:
    """A child's code raised; sent by the child's cell to its supervisor."""

    child_id: str
    incarnation: int
    error: BaseException
    traceback: str


@dataclass(slots=True)
class ChildExited:
    """A child is gone. ``normal`` is False when it was killed or failed."""

    child_id: str
    incarnation: int
    normal: bool
    reason: str


SYSTEM_TYPES: frozenset[type] = frozenset(
    {Init, Envelope, EffectDone, TimerFired, StopRequest, Kill, CrashRequest}
)
