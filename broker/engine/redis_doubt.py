"""Publications in doubt: stored, delivered, but not known to survive a failover.

The hole this closes. With ``replica_acks``, a publish whose WAIT counts too few
replicas answers UnconfirmedPublish, yet the primary stored it and pub/sub carried it
to every node, whose trackers advanced to its offset. If Sentinel then promotes a
replica that never got it, the new primary hands the same offsets, in the same epoch,
to the next publications — acknowledged ones — and every node drops them as
duplicates: a silent gap that recovery cannot see either (the positions match).

The node whose publish got ReplicasMissing files it here (channel, epoch, offset,
digest of the stored body). A node whose catch-up finds the stream's top *below* a
position it saw in the same epoch (the stream went back: its offsets will be handed
out again) files the channel as certainly diverged. ``DoubtResolver.run`` (owned by
the engine link, see RedisEngine.run_link) then runs the VERIFY script on the current
primary, followed by a WAIT for the replicas (VERIFY writes a probe key, so the WAIT
covers what it read):

- held: the same server that stored them (its replication id) or every entry there
  unchanged — resolved once the replicas confirm; until then tried again (a failover
  may still come).
- diverged: VERIFY moved the channel's epoch and announced it on the channel's pub/sub;
  every node tells the channel's subscribers to resync, and positions of the old epoch
  recover with ``recovered: false``. Resolved once the replicas confirm the new epoch.
- moved: the epoch already changed (or the meta is gone): old positions are
  unrecoverable already. Resolved once confirmed.

Everything here but ``DoubtResolver.run`` is plain state, tested without a loop.

Resource handling: at most ``MAX_ENTRIES`` digests per channel and epoch; past that the
doubt only remembers that it overflowed and, on a server other than the one that stored
them, counts as diverged (a needless resync, never a silent gap).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from broker.engine.redis_codec import KeyScheme, decode_published
from broker.engine.redis_lane import ReplicasMissing, Wait
from broker.engine.redis_pubsub import Backoff
from broker.engine.redis_scripts import VERIFY
from broker.engine.state import new_epoch
from broker.types import StreamPosition

__all__ = ["MAX_ENTRIES", "Doubt", "DoubtResolver", "InDoubt", "Outcome", "verifier"]

log = logging.getLogger(__name__)

MAX_ENTRIES = 64


class Outcome(Enum):
    """What VERIFY found (its status: 0, 2, 1)."""

    HELD = 0
    MOVED = 1
    DIVERGED = 2


@dataclass
class Doubt:
    """The publications of one channel and epoch this node cannot vouch for."""

    epoch: str
    seen: int = 0  # the stream reached this offset: a lower top means it went back
    entries: dict[int, str] = field(default_factory=dict)  # offset -> sha1 of the body
    force: bool = False  # diverged for sure (or too many entries to check)
    server: str = ""  # replication id of the primary seen holding them ("" unknown)
    version: int = 0  # bumped by every publication filed: a VERIFY under way missed it

    def args(self) -> list[str | int]:
        """VERIFY's arguments after the first four: server, force, seen, pairs."""
        pairs: list[str | int] = []
        for offset, digest in sorted(self.entries.items()):
            pairs += (offset, digest)
        return [self.server, "1" if self.force else "0", self.seen, *pairs]


class InDoubt:
    """Doubts by (channel, epoch); see the module docstring."""

    def __init__(self) -> None:
        self._doubts: dict[tuple[str, str], Doubt] = {}

    def __len__(self) -> int:
        return len(self._doubts)

    def items(self) -> list[tuple[str, Doubt]]:
        return [(channel, doubt) for (channel, _), doubt in self._doubts.items()]

    def unconfirmed(self, channel: str, position: StreamPosition, body: bytes) -> None:
        """A publication stored at ``position`` whose replicas did not confirm it."""
        doubt = self._doubt(channel, position.epoch)
        doubt.seen, doubt.version = max(doubt.seen, position.offset), doubt.version + 1
        if doubt.force or len(doubt.entries) >= MAX_ENTRIES:
            doubt.force, doubt.entries = True, {}
            return
        doubt.entries[position.offset] = hashlib.sha1(body).hexdigest()

    def went_back(self, channel: str, position: StreamPosition) -> None:
        """The stream's top is below ``position``, which existed: it lost entries."""
        doubt = self._doubt(channel, position.epoch)
        doubt.seen, doubt.force, doubt.entries = max(doubt.seen, position.offset), True, {}
        doubt.version += 1

    def settle(self, channel: str, doubt: Doubt, version: int, outcome: Outcome,
               server: str, confirmed: bool) -> None:
        """Record what VERIFY of ``doubt`` at ``version`` found; a confirmed one is done
        with (see the module). Publications filed since are verified next time."""
        key = (channel, doubt.epoch)
        if self._doubts.get(key) is not doubt or doubt.version != version:
            return
        if confirmed:
            del self._doubts[key]
        elif outcome is Outcome.HELD and not doubt.server:
            # On this server now; from here on only a change of primary can lose them.
            doubt.server = server

    def _doubt(self, channel: str, epoch: str) -> Doubt:
        key = (channel, epoch)
        doubt = self._doubts.get(key)
        if doubt is None:
            doubt = self._doubts[key] = Doubt(epoch)
        return doubt


# (channel, doubt) -> (outcome, server replication id, replicas confirmed)
Verify = Callable[[str, Doubt], Awaitable[tuple[Outcome, str, bool]]]
# The engine's script runner: (channel, script, keys, args, wait=) -> reply
Run = Callable[..., Awaitable[Any]]


def verifier(run: Run, keys: KeyScheme, publish_cmd: str, wait: Wait | None) -> Verify:
    """VERIFY on the channel's primary through the engine's ``run``, then a WAIT for
    ``wait`` replicas (none: confirmed at once). Error handling: ``run``'s EngineError
    when Redis cannot be reached."""

    async def verify(channel: str, doubt: Doubt) -> tuple[Outcome, str, bool]:
        args = [doubt.epoch, new_epoch(), keys.pubsub(channel), publish_cmd, *doubt.args()]
        stored = [keys.stream(channel), keys.meta(channel), keys.probe(channel)]
        try:
            status, server = await run(channel, VERIFY, stored, args, wait=wait)
            confirmed = True
        except ReplicasMissing as missing:
            (status, server), confirmed = missing.result, False
        return Outcome(int(status)), server.decode() if server else "", confirmed

    return verify


class DoubtResolver:
    """Runs VERIFY for every doubt until each is resolved; see the module docstring.
    ``verify`` raises (EngineError) when the primary cannot be reached."""

    def __init__(self, verify: Verify, backoff: Backoff) -> None:
        self.doubts = InDoubt()
        self.diverged = 0  # epochs moved by this node (statistics)
        self._verify, self._backoff = verify, backoff
        self._wake = asyncio.Event()

    def unconfirmed(self, channel: str, msg: bytes) -> None:
        """The PUBLISH script's message ``msg`` was stored and sent, not confirmed."""
        offset, epoch, start = decode_published(msg)
        if offset:  # without history no offset can be handed out again
            self.doubts.unconfirmed(channel, StreamPosition(offset, epoch), msg[start:])
            self._wake.set()

    def went_back(self, channel: str, position: StreamPosition) -> None:
        self.doubts.went_back(channel, position)
        self._wake.set()

    async def run(self) -> None:
        """Verify until nothing is in doubt, then wait for the next doubt; forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self.doubts):
                if await self._round():
                    self._backoff.reset()
                    await asyncio.sleep(0)  # new doubts filed meanwhile go next round
                else:
                    await asyncio.sleep(self._backoff.next_delay())

    async def _round(self) -> bool:
        """One VERIFY per doubt, all at once (the engine pipelines them, with one WAIT
        for all); True if every one was resolved."""
        doubts = self.doubts.items()
        versions = [doubt.version for _, doubt in doubts]
        results = await asyncio.gather(*(self._verify(channel, doubt)
                                         for channel, doubt in doubts), return_exceptions=True)
        resolved = True
        for (channel, doubt), version, result in zip(doubts, versions, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                # The primary is unreachable or moving: try again.
                log.info("redis engine: verifying %s failed: %r", channel, result)
                resolved = False
                continue
            outcome, server, confirmed = result
            if outcome is Outcome.DIVERGED:
                self.diverged += 1
                log.warning("redis engine: %s lost publications of epoch %s on a new "
                            "primary; moved to a new epoch, subscribers resync",
                            channel, doubt.epoch)
            self.doubts.settle(channel, doubt, version, outcome, server, confirmed)
            resolved = resolved and confirmed and doubt.version == version
        return resolved
