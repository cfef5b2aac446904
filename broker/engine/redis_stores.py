"""The stores of the Redis engine: history reads, presence and occupancy.

Each is one Lua script (broker.engine.redis_scripts) run on the channel's server through
the engine's ``_run``/``_command`` (which map Redis and socket failures to EngineError);
``RedisEngine`` mixes this in. See broker.engine.base (Broker.history,
PresenceManager, OccupancyManager) for each method's guarantee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.engine.base import UnrecoverablePosition
from broker.engine.redis_batch import Wait
from broker.engine.redis_codec import (
    KeyScheme,
    decode_info,
    encode_info,
    publication_from_stream,
)
from broker.engine.redis_scripts import (
    ADD_PRESENCE,
    GET_PRESENCE,
    HISTORY,
    OCCUPY,
    REMOVE_PRESENCE,
    VACATE,
    Script,
)
from broker.engine.state import new_epoch
from broker.types import ClientInfo, Publication, StreamPosition

if TYPE_CHECKING:
    from broker.engine.redis_receive import Receiver

__all__ = ["RedisStores", "ms"]

_STATUS = {1: "epoch differs", 2: "offset beyond top", 3: "publications no longer held"}


def ms(seconds: float) -> int:
    """Seconds as the whole milliseconds Redis TTL arguments take (at least 1)."""
    return max(1, int(seconds * 1000))


class RedisStores:
    """History, presence and occupancy over the engine's script runner (a mixin)."""

    keys: KeyScheme
    _meta_ttl: float
    receiver: Receiver

    if TYPE_CHECKING:  # RedisEngine's, declared for the type checker only (no stubs)
        async def _run(self, channel: str, script: Script, keys: list[str], args: list[Any],
                       *, wait: Wait | None = None, ordered: bool = False) -> Any: ...

        async def _command(self, channel: str, method: str, *args: Any,
                           ordered: bool = False) -> Any: ...

    async def _read(
        self, channel: str, since: StreamPosition | None, limit: int, reverse: bool,
        meta_ttl: float, create: bool,
    ) -> tuple[list[tuple[Publication, str]], StreamPosition, int]:
        keys = [self.keys.stream(channel), self.keys.meta(channel)]
        args = [
            ms(meta_ttl), new_epoch(), "" if since is None else since.offset,
            "" if since is None else since.epoch, limit, int(reverse), int(create),
        ]
        raw = await self._run(channel, HISTORY, keys, args)
        top = StreamPosition(int(raw[0]), raw[1].decode() if raw[1] else "")
        pubs = [publication_from_stream(raw[i], raw[i + 1]) for i in range(3, len(raw), 2)]
        return pubs, top, int(raw[2])

    async def _catch_up_read(
        self, channel: str, since: StreamPosition | None
    ) -> tuple[list[tuple[Publication, str]], StreamPosition, int]:
        return await self._read(channel, since, -1, False, self._meta_ttl, False)

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        history_ttl: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """See Broker.history (UnrecoverablePosition; EngineError on a Redis failure).
        The top it answers for a channel this node subscribes to has reached the
        handlers first (Receiver.reach): a subscriber positioned there is handed no
        publication up to it afterwards."""
        meta_ttl = max(self._meta_ttl, history_ttl)
        pubs, top, status = await self._read(channel, since, limit, reverse, meta_ttl, True)
        if status:
            raise UnrecoverablePosition(f"{channel}: {_STATUS.get(status, status)} ({since})")
        await self.receiver.reach(channel, top)
        return [pub for pub, _ in pubs], top

    async def remove_history(self, channel: str) -> None:
        """See Broker.remove_history: the stream goes, the meta (epoch, top) stays."""
        await self._command(channel, "delete", self.keys.stream(channel))

    # -- presence ------------------------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        return [self.keys.presence_expiry(channel), self.keys.presence_info(channel)]

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, ttl: float
    ) -> None:
        """See PresenceManager.add_presence (ValueError if ttl <= 0)."""
        if ttl <= 0:
            raise ValueError(f"presence ttl must be > 0, got {ttl}")
        args = [ms(ttl), client_id, encode_info(info)]
        await self._run(channel, ADD_PRESENCE, self._presence_keys(channel), args)

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        await self._run(channel, REMOVE_PRESENCE, self._presence_keys(channel), [client_id])

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        raw = await self._run(channel, GET_PRESENCE, self._presence_keys(channel), [])
        return {raw[i].decode(): decode_info(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        clients = await self.presence(channel)
        return len(clients), len({info.user for info in clients.values()})

    # -- occupancy -----------------------------------------------------------------------

    async def occupy(self, key: str, node: str, ttl: float) -> bool:
        """See OccupancyManager.occupy (ValueError if ttl <= 0)."""
        if ttl <= 0:
            raise ValueError(f"occupancy ttl must be > 0, got {ttl}")
        return bool(await self._run(key, OCCUPY, [self.keys.occupancy(key)], [ms(ttl), node]))

    async def vacate(self, key: str, node: str) -> bool:
        """See OccupancyManager.vacate."""
        return bool(await self._run(key, VACATE, [self.keys.occupancy(key)], [node]))
