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


class RuntimeClosed(ActorError):
    """The runtime is shut down; nothing more can be told or spawned."""


class InjectedCrash(Exception):
    """Raised inside an actor by ``Runtime.crash_actor`` (tests and demonstrations only)."""
