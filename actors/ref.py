"""ActorRef: a stable, hashable name for an actor that survives its restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.loop import Runtime


class ActorRef:
    """Names an actor by id; resolves its current thespian address on every use.

    Safe to keep across restarts (a restarted actor keeps its id). Telling a ref whose
    actor is gone drops the message and counts it as a dead letter.
    """

    __slots__ = ("id", "runtime")

    def __init__(self, runtime: Runtime, actor_id: str) -> None:
        self.runtime = runtime
        self.id = actor_id

    def tell(self, message: Any) -> None:
        """Send ``message`` from loop code (not from inside an actor: use ``Actor.tell``)."""
        self.runtime.tell(self, message)

    async def ask(self, message: Any, timeout: float = 5.0) -> Any:
        """Send ``message`` and await the actor's reply. See ``Runtime.ask``."""
        return await self.runtime.ask(self, message, timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.id in self.runtime.registry

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ActorRef({self.id!r})"
