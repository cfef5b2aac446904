"""MemoryEngine: the single-node Engine, all state in process memory.

There are no other nodes, so publishing delivers nowhere and no handler is ever called:
the caller fans the returned Publication out locally, as with every engine. Every
operation is synchronous under the hood (no awaits inside), so on one event loop each
call is atomic — that is what makes "append to history and publish" atomic per channel
and offsets dense under concurrent publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.engine.base import (
    ControlHandler,
    EngineError,
    JoinLeaveHandler,
    PublicationHandler,
    SuppressedPublish,
)
from broker.engine.state import (
    HistoryHub,
    HistoryStats,
    IdempotencyCache,
    PresenceStats,
    PresenceTable,
)
from broker.types import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from broker.engine.base import Engine

__all__ = ["MemoryEngine", "MemoryEngineStats"]

log = logging.getLogger(__name__)

DEFAULT_HISTORY_META_TTL = 30 * 24 * 3600.0  # Centrifugo's history_meta_ttl default (720h)
DEFAULT_IDEMPOTENT_TTL = 300.0  # centrifuge's default idempotent result TTL
_NO_POSITION = StreamPosition(0, "")


@dataclass(frozen=True, slots=True)
class MemoryEngineStats:
    """A snapshot for metrics and the admin page."""

    history: HistoryStats
    presence: PresenceStats
    idempotency_results: int
    subscribed_channels: int


class MemoryEngine:
    """Engine for one node; see broker.engine.base for the guarantees of each method.

    ``clock`` is a monotonic clock for expiry (injected for tests); publication times
    come from the wall clock. ``sweep_interval`` only decides how soon expired state
    is freed: every read checks expiry itself.
    """

    name = "memory"

    def __init__(
        self,
        *,
        history_meta_ttl: float = DEFAULT_HISTORY_META_TTL,
        sweep_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if history_meta_ttl <= 0:
            raise ValueError(f"history_meta_ttl must be > 0, got {history_meta_ttl}")
        if sweep_interval <= 0:
            raise ValueError(f"sweep_interval must be > 0, got {sweep_interval}")
        self._meta_ttl = history_meta_ttl
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._history = HistoryHub()
        self._presence = PresenceTable()
        self._occupancy = PresenceTable()  # key -> nodes (here: only this one)
        self._results: IdempotencyCache[tuple[Publication, StreamPosition]] = IdempotencyCache()
        self._subscribed: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def set_handlers(
        self,
        on_publication: PublicationHandler,
        on_control: ControlHandler,
        on_join: JoinLeaveHandler | None = None,
        on_leave: JoinLeaveHandler | None = None,
        on_unrecoverable: Callable[[str], None] | None = None,
    ) -> None:
        """Accepted for the contract; never called, as there is no other node."""

    async def start(self) -> None:
        """Start the periodic sweep; idempotent.

        Error handling: raises EngineError if the engine was closed.
        """
        self._check_open()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="memory-engine-sweep"
            )

    async def run_link(self) -> None:
        """Nothing to own: the memory engine has no other node."""

    async def close(self) -> None:
        """Cancel the sweep and wait for it; idempotent. Later calls raise EngineError."""
        self._closed = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_forever(self) -> None:
        """Free expired state every ``sweep_interval``.

        Error handling: an exception in one sweep is logged and the next sweep still
        runs — expiry is also checked on every read, so a failed sweep only delays
        freeing memory, it never serves expired data.
        """
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                self.sweep()
            except Exception:
                log.exception("memory engine sweep failed")

    def sweep(self) -> int:
        """Free everything expired now; returns how many items changed (for tests/metrics)."""
        now = self._clock()
        return (self._history.sweep(now) + self._presence.sweep(now)
                + self._occupancy.sweep(now) + self._results.sweep(now))

    def statistics(self) -> MemoryEngineStats:
        return MemoryEngineStats(
            self._history.statistics(),
            self._presence.statistics(),
            len(self._results),
            len(self._subscribed),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("memory engine is closed")

    # -- broker ------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: Mapping[str, str] | None = None,
        history_size: int = 0,
        history_ttl: float = 0.0,
        idempotency_key: str | None = None,
        idempotent_ttl: float = 0.0,
        delta: bool = False,
    ) -> tuple[Publication, StreamPosition]:
        """See Broker.publish. Error handling: raises EngineError once closed."""
        if self._closed:
            raise EngineError("memory engine is closed")
        if idempotency_key is None:
            return self._publish(channel, data, info, tags, history_size, history_ttl, delta)
        now = self._clock()
        earlier = self._results.get(channel, idempotency_key, now)
        if earlier is not None:
            return SuppressedPublish(earlier)
        result = self._publish(channel, data, info, tags, history_size, history_ttl, delta)
        ttl = idempotent_ttl if idempotent_ttl > 0 else DEFAULT_IDEMPOTENT_TTL
        self._results.put(channel, idempotency_key, result, ttl=ttl, now=now)
        return result

    def _publish(
        self,
        channel: str,
        data: bytes,
        info: ClientInfo | None,
        tags: Mapping[str, str] | None,
        history_size: int,
        history_ttl: float,
        delta: bool,
    ) -> tuple[Publication, StreamPosition]:
        time_ms = int(time.time() * 1000)
        if history_size > 0 and history_ttl > 0:
            return self._history.append(
                channel,
                data,
                info,
                tags,
                size=history_size,
                ttl=history_ttl,
                meta_ttl=self._meta_ttl,
                now=self._clock(),
                time_ms=time_ms,
                delta=delta,
            )
        pub = Publication(data, 0, info, dict(tags) if tags else None, time_ms, delta)
        return pub, _NO_POSITION

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        """No other node to tell."""
        self._check_open()

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        """No other node to tell."""
        self._check_open()

    async def publish_control(self, data: bytes) -> None:
        """No other node to tell; the caller applies control messages locally."""
        self._check_open()

    async def subscribe(self, channel: str) -> None:
        """Only recorded for statistics: no remote publications will ever arrive."""
        self._check_open()
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Only recorded for statistics."""
        self._check_open()
        self._subscribed.discard(channel)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        history_ttl: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """See Broker.history (raises UnrecoverablePosition, EngineError once closed)."""
        self._check_open()
        meta_ttl = max(self._meta_ttl, history_ttl)
        return self._history.history(
            channel, since, limit, reverse, meta_ttl=meta_ttl, now=self._clock()
        )

    async def remove_history(self, channel: str) -> None:
        """See Broker.remove_history."""
        self._check_open()
        self._history.remove(channel)

    # -- presence ----------------------------------------------------------------------

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, ttl: float
    ) -> None:
        """See PresenceManager.add_presence (ValueError if ttl <= 0)."""
        self._check_open()
        self._presence.add(channel, client_id, info, ttl=ttl, now=self._clock())

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        """See PresenceManager.remove_presence; ``user`` is not needed here."""
        self._check_open()
        self._presence.remove(channel, client_id)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        self._check_open()
        return self._presence.get(channel, self._clock())

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        self._check_open()
        return self._presence.stats(channel, self._clock())

    # -- occupancy ---------------------------------------------------------------------

    async def occupy(self, key: str, node: str, ttl: float) -> bool:
        """See OccupancyManager.occupy (ValueError if ttl <= 0)."""
        self._check_open()
        now = self._clock()
        first = not self._occupancy.get(key, now)
        self._occupancy.add(key, node, ClientInfo(node, node), ttl=ttl, now=now)
        return first

    async def vacate(self, key: str, node: str) -> bool:
        """See OccupancyManager.vacate."""
        self._check_open()
        now = self._clock()
        self._occupancy.sweep(now)  # an expired hold is no longer held
        return self._occupancy.remove(key, node) and not self._occupancy.get(key, now)


if TYPE_CHECKING:
    _conforms: type[Engine] = MemoryEngine
