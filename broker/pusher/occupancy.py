"""Cluster-wide ``channel_occupied`` / ``channel_vacated`` webhooks.

A node knows when *its* first subscriber of a Pusher channel arrives and when its last
one leaves; whether the channel is occupied *in the cluster* is the engine's to say
(``OccupancyManager``: the nodes holding a key, with a TTL). When this node starts
holding a channel it tells the engine (``occupy``), and only the node that was first in
the whole cluster sends ``channel_occupied``; when it stops, ``vacate``, and only the
last node out sends ``channel_vacated``. On the memory engine (one node) that is exactly
the node's own first/last; on Redis it is decided by one Lua script per step, so nodes
racing for a channel produce one webhook, not one each.

Per channel, steps reach the engine in order, one at a time (``OccupancyTable``): a
socket that subscribes and leaves at once may fold both steps into none, never reorder
them. Holds are refreshed every ``REFRESH_INTERVAL`` and expire after
``OCCUPANCY_TTL``, so a node that dies stops holding its channels within that time.

Limitation: a channel whose last holder died is never reported vacated (nobody is left
to see it go); the next node to occupy it reports it occupied again. Error handling: an
engine failure is logged and the step counts as done (its webhook is lost, at most once,
as for webhooks in general); the refresh retries on its next tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.engine.base import EngineError
from broker.pusher.codec import pusher_name

if TYPE_CHECKING:
    from broker.config.pusher import PusherApp
    from broker.node import Node
    from broker.pusher.webhooks import WebhookSender

__all__ = ["OCCUPANCY_TTL", "REFRESH_INTERVAL", "Occupancy", "OccupancyTable", "wants_occupancy"]

log = logging.getLogger("chorus.pusher.occupancy")

OCCUPANCY_TTL = 30.0  # seconds a hold lives without a refresh
REFRESH_INTERVAL = 10.0
OCCUPY, VACATE, REFRESH = "occupy", "vacate", "refresh"


def wants_occupancy(app: PusherApp) -> bool:
    """Whether any of the app's webhooks takes channel_occupied or channel_vacated."""
    return any({"channel_occupied", "channel_vacated"} & set(hook.event_types)
               for hook in app.webhooks)


@dataclass(slots=True)
class _Entry:
    """One channel's occupancy: what this node wants and what the engine was told."""

    want: bool = False  # this node holds the channel now
    told: bool = False  # the engine was last told (or is being told) that it does
    busy: bool = False  # a step is in flight


class OccupancyTable:
    """Per node, pure: which channels it holds and which engine step comes next, so that
    per channel at most one step is in flight and they follow the local changes in order.
    """

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def set(self, channel: str, held: bool) -> str | None:
        """This node started (``held``) or stopped holding ``channel``. Returns the step
        to start now, or None (nothing to do, or a step in flight: ``done`` goes on)."""
        entry = self.entries.get(channel)
        if entry is None:
            if not held:
                return None
            entry = self.entries[channel] = _Entry()
        entry.want = held
        return None if entry.busy else self._next(channel, entry)

    def done(self, channel: str) -> str | None:
        """The step in flight for ``channel`` ended; the next one, if the local state
        moved meanwhile."""
        entry = self.entries.get(channel)
        if entry is None:
            return None
        entry.busy = False
        return self._next(channel, entry)

    def refreshes(self) -> list[str]:
        """The channels whose hold to refresh now (the engine holds them for this node and
        no step is in flight), each now busy with its refresh: a refresh never lands
        after a vacate it raced with."""
        due = [channel for channel, entry in self.entries.items()
               if entry.told and not entry.busy]
        for channel in due:
            self.entries[channel].busy = True
        return due

    def __len__(self) -> int:
        return len(self.entries)

    def _next(self, channel: str, entry: _Entry) -> str | None:
        if entry.want == entry.told:
            if not entry.want:
                del self.entries[channel]
            return None
        entry.busy, entry.told = True, entry.want
        return OCCUPY if entry.want else VACATE


class Occupancy:
    """The shell around ``OccupancyTable``: runs its steps on the engine (node tasks) and
    sends the webhooks; refreshes the holds on a loop timer while there are any (one
    step per channel: a Redis engine pipelines them)."""

    def __init__(self, node: Node, sender: WebhookSender) -> None:
        self.node = node
        self.sender = sender
        self.table = OccupancyTable()
        self.apps: dict[str, PusherApp] = {}  # chorus channel -> its app
        self.tracked = {app.id for app in node.config.pusher.apps if wants_occupancy(app)}
        self._timer: object | None = None
        self._orphans: set[str] = set()

    def changed(self, app: PusherApp, channel: str, held: bool) -> None:
        """This node's first subscriber of ``channel`` came (``held``) or its last left.
        Apps without an occupancy webhook cost nothing here (no engine step)."""
        if app.id not in self.tracked:
            return
        self.apps[channel] = app
        step = self.table.set(channel, held)
        if step is not None:
            self.node.spawn(self._run(channel, step))
        if held and self._timer is None:
            self._timer = self.node.runtime.loop.call_later(REFRESH_INTERVAL, self._refresh)

    async def _run(self, channel: str, step: str) -> None:
        engine, uid, app = self.node.engine, self.node.uid, self.apps[channel]
        try:
            if step == REFRESH:
                await engine.occupy(channel, uid, OCCUPANCY_TTL)
            elif step == OCCUPY:
                if await engine.occupy(channel, uid, OCCUPANCY_TTL):
                    self.sender.channel_event(app, "channel_occupied", pusher_name(channel))
            elif await engine.vacate(channel, uid):
                self.sender.channel_event(app, "channel_vacated", pusher_name(channel))
        except EngineError as error:
            log.warning("pusher occupancy %s of %s failed: %r", step, channel, error)
        following = self.table.done(channel)
        if following is not None:
            self.node.spawn(self._run(channel, following))
        elif channel not in self.table.entries:
            self.apps.pop(channel, None)

    def _refresh(self) -> None:
        self._timer = None
        # A hold whose subscription never came through (refused, the socket gone during
        # a presence lookup) has no local subscriber to end it: end it here, once it has
        # been so for two ticks (not one: a subscription may be on its way).
        subscribers = self.node.channel_subscribers
        orphans = {channel for channel, entry in self.table.entries.items()
                   if entry.want and not subscribers.get(channel)}
        for channel in orphans & self._orphans:
            self.changed(self.apps[channel], channel, held=False)
        self._orphans = orphans
        for channel in self.table.refreshes():
            self.node.spawn(self._run(channel, REFRESH))
        if len(self.table):
            self._timer = self.node.runtime.loop.call_later(REFRESH_INTERVAL, self._refresh)
