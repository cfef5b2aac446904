"""Where this node's handlers stand in each channel's stream, and bringing them up to it.

``Positions`` is the half of the Redis engine's ``Receiver`` (broker.engine.redis_receive)
that keeps, per subscribed channel, the last stream position handed to the handlers
(``PositionTracker``) and reads the stream when the live path cannot be trusted to have
delivered everything: a gap, a publication of this node about to fan out
(``own_publication``), a history read about to answer a top (``reach``), a reconnect
(``catch_up``). Guarantees (with the reader's):

- every publication above the channel's position reaches the handlers once, in offset
  order, or ``on_unrecoverable(channel)`` is called instead of a partial gap (the epoch
  changed, the stream is gone, or its publications fell out of it);
- a stream found below a position seen in the same epoch (its offsets will be handed out
  again) goes to ``went_back`` (the engine moves its epoch: broker.engine.redis_doubt);
- an epoch announced on the channel (``_epoch_moved``) makes its subscribers resync.

Error handling: a handler that raises is logged and counted (``handler_errors``), never
breaks the reader; a failed stream read raises to the caller (the reader reconnects).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from broker.engine.base import ControlHandler, JoinLeaveHandler, PublicationHandler
from broker.engine.redis_pubsub import PositionTracker, Verdict
from broker.types import Publication, StreamPosition

__all__ = ["CatchUp", "Handlers", "Positions", "ReceiveStats", "UnrecoverableHandler"]

log = logging.getLogger("broker.engine.redis_receive")  # one logger for the receiving leg

UnrecoverableHandler = Callable[[str], None]
# (channel, since or None for "from the start") -> (pubs with sender node, top, status)
# where top.epoch == "" means the stream does not exist; status 0 = readable.
CatchUp = Callable[
    [str, StreamPosition | None],
    Awaitable[tuple[list[tuple[Publication, str]], StreamPosition, int]],
]


def _ignore(*args: object) -> None:
    pass


@dataclass
class Handlers:
    publication: PublicationHandler = _ignore
    control: ControlHandler = _ignore
    join: JoinLeaveHandler = _ignore
    leave: JoinLeaveHandler = _ignore
    unrecoverable: UnrecoverableHandler = _ignore


@dataclass
class ReceiveStats:
    delivered: int = 0
    caught_up: int = 0
    unrecoverable: int = 0
    undecodable: int = 0
    handler_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Positions:
    """See the module docstring. ``node_id`` marks this node's own publications (never
    handed to its handlers); ``read_stream`` reads a channel's stream from a position."""

    def __init__(self, node_id: str, read_stream: CatchUp) -> None:
        self.node_id = node_id
        self.handlers = Handlers()
        # (channel, last seen position): the stream went back below it (see catch_up).
        self.went_back: Callable[[str, StreamPosition], None] = _ignore
        self.stats = ReceiveStats()
        self.tracker = PositionTracker()
        self.channels: set[str] = set()
        self._read_stream = read_stream

    def _epoch_moved(self, channel: str, moved: StreamPosition) -> None:
        """The channel's stream diverged and was given a new epoch (VERIFY): positions
        of the old one are unrecoverable, so its subscribers resync now rather than
        at the next publication (which may never come)."""
        last = self.tracker.get(channel)
        if last is None or last.epoch == moved.epoch:
            return
        if last.epoch:
            self._unrecoverable(channel)
        self.tracker.set(channel, moved)

    async def own_publication(self, channel: str, position: StreamPosition) -> None:
        """This node stored a publication at ``position`` and fans it out locally next:
        bring everything before it to the handlers first, so local subscribers get
        offsets in order.

        - ``position`` opens an epoch this node has not seen (the stream was lost, e.g.
          Redis restarted empty, and the reader has not noticed: it may still be
          reconnecting): the channel's subscribers are told first. Otherwise the local
          fan-out would hand them the new epoch's offsets as if they continued the old
          stream — a silent gap. Found by tests/cluster/test_faults.py.
        - Lower offsets of other nodes have not come through pub/sub yet (the link lags
          or is reconnecting): they are read from the stream and delivered now. Otherwise
          the local fan-out would overtake them. Found by tests/cluster/test_faults.py
          (a failover's reconnect).

        Afterwards the channel's position is at least ``position``: its echo over pub/sub
        is a duplicate. Not covered: with several publishers, a later offset of another
        node that arrives while this publish is between Redis and its fan-out.
        """
        if not position.offset or channel not in self.channels:
            return
        verdict = self.tracker.judge(channel, position.offset, position.epoch)
        if verdict is Verdict.NEW_EPOCH:
            self._unrecoverable(channel)
        elif verdict is Verdict.GAP:
            await self.catch_up(channel, until=position.offset)
        seen = self.tracker.get(channel)
        if seen is None or seen.epoch != position.epoch or seen.offset < position.offset:
            self.tracker.set(channel, position)

    async def reach(self, channel: str, position: StreamPosition) -> None:
        """A history read is about to answer ``position`` as the channel's top (a
        subscribe reply takes it as the subscriber's position): bring the handlers up
        to it first. Otherwise publications of other nodes up to ``position`` that the
        live path has not delivered yet (the link lags or is reconnecting) would reach
        the subscriber after its reply — a repeat. Found by tests/cluster/test_faults.py
        (Redis restarted empty: a reply at the new epoch's offset 2, then offset 2 again
        from the catch-up after the reconnect).

        Only within the epoch the node knows (or from an empty baseline): an epoch it has
        not seen is left to the reader's catch-up and the live path, which report it
        (a report now would resync the very subscription being answered, and a pending
        one is dropped without its reply). Not covered, as in ``own_publication``: this
        node's own publications still between Redis and their fan-out.
        """
        if not position.epoch or channel not in self.channels:
            return
        seen = self.tracker.get(channel)
        if seen is None or (seen.epoch and seen.epoch != position.epoch):
            return  # no baseline yet (the subscribe reads it), or an unseen epoch
        if seen.epoch == position.epoch and seen.offset >= position.offset:
            return  # nothing to bring
        await self.catch_up(channel)

    # -- catch-up ------------------------------------------------------------------------

    async def catch_up(self, channel: str, until: int | None = None) -> None:
        """Deliver what the stream holds after the channel's last seen position (only
        offsets below ``until``, if given: the caller delivers ``until`` itself)."""
        last = self.tracker.get(channel)
        if last is None:
            return
        pubs, top, status = await self._read_stream(channel, last if last.epoch else None)
        if channel not in self.channels:
            return  # unsubscribed while reading
        if top.epoch == "":
            if last.epoch:
                self._unrecoverable(channel)  # the stream is gone with its epoch
            self.tracker.set(channel, StreamPosition(0, ""))
            return
        # A restored channel (broker.backup) answers a position in its prior epoch under
        # its new one: nothing is lost, but subscribers hold the old epoch, so they
        # resubscribe (and recover, with recovered: true) rather than take publications
        # numbered in an epoch they were never told.
        renamed = status == 0 and bool(last.epoch) and top.epoch != last.epoch
        complete = status == 0 and not renamed and (
            bool(last.epoch) or (pubs[0][0].offset == 1 if pubs else top.offset == 0)
        )
        # The live path may have delivered some of these while the stream was read:
        # deliver only what lies past the tracker *now*, and never move it backwards.
        seen = self.tracker.get(channel)
        floor = last.offset
        if seen is not None and seen.epoch == top.epoch:
            floor = max(floor, seen.offset)
        if renamed:
            log.info("redis engine: %s was restored under a new epoch; subscribers resync",
                     channel)
            self._unrecoverable(channel)
        elif not complete:
            if status == 2 and last.epoch and top.epoch == last.epoch:
                # Below what this node saw, same epoch: the next publications would
                # reuse offsets it already holds and be dropped as duplicates.
                self._call(self.went_back, channel, last)
            self._unrecoverable(channel)
        else:
            for pub, node in pubs:
                if until is not None and pub.offset >= until:
                    break
                if node != self.node_id and pub.offset > floor:
                    self.stats.caught_up += 1
                    self._deliver(channel, pub, StreamPosition(pub.offset, top.epoch))
        if until is not None and top.offset >= until:
            top = StreamPosition(until - 1, top.epoch)  # what lies past is not delivered
        if seen is None or seen.epoch != top.epoch or seen.offset < top.offset:
            self.tracker.set(channel, top)

    # -- handlers --------------------------------------------------------------------------

    def _deliver(self, channel: str, pub: Publication, position: StreamPosition | None) -> None:
        self.stats.delivered += 1
        self._call(self.handlers.publication, channel, pub, position)

    def _unrecoverable(self, channel: str) -> None:
        self.stats.unrecoverable += 1
        log.info("redis engine: publications of %s since the last position are lost", channel)
        self._call(self.handlers.unrecoverable, channel)

    def _call(self, handler: Callable[..., None], *args: Any) -> None:
        """Run a node handler; its failure is logged, never breaks the reader."""
        try:
            handler(*args)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("redis engine: handler %r failed", handler)
