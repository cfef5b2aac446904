"""Engines: the node-to-node leg (PUB/SUB, history streams, presence).

``base`` holds the contracts, ``memory`` the single-node engine; ``redis`` joins nodes.
"""

from broker.engine.base import (
    Broker,
    Engine,
    EngineError,
    PresenceManager,
    PublicationHandler,
    SuppressedPublish,
    UnrecoverablePosition,
)
from broker.engine.memory import MemoryEngine

__all__ = [
    "Broker",
    "Engine",
    "EngineError",
    "MemoryEngine",
    "PresenceManager",
    "PublicationHandler",
    "SuppressedPublish",
    "UnrecoverablePosition",
]
