"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.config import Config

if TYPE_CHECKING:
    from broker.node import Node


@dataclass
class ChorusState:
    """Filled by the app's cleanup context once the node is running."""

    config: Config
    rpc_handlers: dict[str, Any] = field(default_factory=dict)
    message_handlers: list[Any] = field(default_factory=list)
    hooks: dict[str, Any] = field(default_factory=dict)  # @chorus.on_connect ... by event
    _node: Node | None = None
    # Set when the root supervisor failed: the process must be replaced (exit non-zero).
    fatal: BaseException | None = None
    # Loop time by which the shutdown drain ends (``chorus.shutdown_timeout`` after it
    # began), shared by the drain's two phases (on_shutdown and cleanup).
    drain_deadline: float | None = None

    @property
    def node(self) -> Node:
        if self._node is None:
            raise web.HTTPServiceUnavailable(text="Chorus is starting")
        return self._node


NODE = web.AppKey("chorus", ChorusState)
