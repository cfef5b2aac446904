"""The messages a channel shard (``broker.shard.actor.ShardActor``) receives from the
node and from connections. Plain slotted records: one is made per subscribe, per
publication and per join/leave, never per subscriber."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.connection.framing import Delivery
    from broker.connection.outbox import Outbox
    from broker.shard.filters import Predicate
    from broker.types import ClientInfo, Publication

__all__ = ["Activate", "ChannelSummary", "Deliver", "DeliverJoinLeave", "Resync",
           "Subscribe", "Unsubscribe"]


@dataclass(slots=True)
class Subscribe:
    """Add a connection to a channel's subscribers: pending (publications buffered until
    ``Activate``), or with ``live`` already active after ``after_offset`` -- what a
    ``Subscribe`` and an ``Activate`` told back to back do, as one message: a subscribe
    whose result needed no engine round trip (``broker.connection.subscriptions``)."""

    channel: str
    conn_id: str
    outbox: Outbox
    delivery: Delivery
    join_leave: bool
    delta: bool = False  # fossil deltas negotiated
    predicate: Predicate | None = None  # tags filter
    channel_id: int = 0  # channel compaction negotiated: pushes carry this id
    live: bool = False  # then as Activate(after_offset, track_first) right after it
    after_offset: int = 0
    track_first: bool = False


@dataclass(slots=True)
class Activate:
    """Start delivering to a subscriber after ``after_offset`` (its recovery is done)."""

    channel: str
    conn_id: str
    after_offset: int
    track_first: bool = False  # report the subscriber's first publication (journeys)


@dataclass(slots=True)
class Unsubscribe:
    """Remove a connection from a channel's subscribers."""

    channel: str
    conn_id: str


@dataclass(slots=True)
class Deliver:
    """Fan a publication out to a channel's subscribers."""

    channel: str
    pub: Publication


@dataclass(slots=True)
class DeliverJoinLeave:
    """Fan a join or leave event out to a channel's subscribers."""

    channel: str
    info: ClientInfo
    join: bool


@dataclass(slots=True)
class Resync:
    """The channel's stream lost publications: every subscriber must resubscribe."""

    channel: str


@dataclass(slots=True)
class ChannelSummary:
    """Ask a shard for ``{channel: subscriber count}``."""
