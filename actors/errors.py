"""Exceptions raised by the actor runtime to its asyncio callers."""

from __future__ import annotations


class ActorError(Exception):
    """Base class of every error the runtime raises."""


class ActorNotFound(ActorError):
    """No live actor has this id (it stopped, or never existed)."""


class AskTimeout(ActorError, TimeoutError):
    """An ``ask`` got no reply within its timeout. The actor may still act on the message."""


class ActorStopped(ActorError):
    """The actor stopped before it replied to an ``ask``."""


class CrashNotAllowed(ActorError):
    """``crash_actor`` was called on a runtime built without ``allow_crash=True``."""


class StopRefused(ActorError):
    """``stop_actor`` on a permanent actor without ``force``: its supervisor keeps its spec
    but would never start it again, so the tree would stay short of it for good.
    Restart it instead (``restart_actor``), or pass ``force=True`` to mean it."""

    def __init__(self, actor_id: str, parent: str | None) -> None:
        owner = f"a permanent child of {parent}" if parent else "the permanent root"
        super().__init__(
            f"refused to stop {actor_id}: it is {owner}, and a stopped permanent actor "
            "is never started again; restart it instead")
        self.actor_id = actor_id
        self.parent = parent


class RuntimeClosed(ActorError):
    """The runtime is shut down; nothing more can be told or spawned."""


class InjectedCrash(Exception):
    """Raised inside an actor by ``Runtime.crash_actor`` (tests and demonstrations only)."""
