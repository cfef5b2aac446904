"""Last-value channels: Centrifugo's "cache recovery mode" (``force_recovery_mode: cache``).

A subscriber that recovers in such a channel (it sends ``recover: true``, e.g. the SDKs'
empty ``since``; or every subscriber when the namespace sets ``auto_cache_recover``, as
in Centrifugo v6) gets the channel's latest publication in the subscribe result — not
the backlog — so the channel reads like a realtime key-value store. The latest
publication comes from the shard's L1 when it holds the channel, else from the engine
(a history read of limit 1, reverse), see ``CacheLayer.latest``.

``recovered`` follows centrifuge's ``isCacheRecovered``: true when a latest publication
exists (it is returned unless the client says it already has exactly that position),
or, with no latest publication, only when the client's position is the current one.
On success the result's offset is the client's own (the publication moves it on), as
centrifuge does, so the SDK's position ends at the latest offset either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.types import Publication, StreamPosition
from broker.wire import publication_dict

if TYPE_CHECKING:
    from broker.config import ChannelOptions
    from broker.node import Node

__all__ = ["cache_recovered", "last_value_result", "wants_last_value"]


def wants_last_value(options: ChannelOptions, recoverable: bool, recovering: bool) -> bool:
    """Whether a subscribe is answered in cache mode (else the stream path)."""
    if options.force_recovery_mode != "cache" or not recoverable:
        return False
    return recovering or options.auto_cache_recover


def cache_recovered(latest: Publication | None, top: StreamPosition,
                    since: StreamPosition) -> tuple[list[Publication], bool]:
    """The publications to send (at most the latest one) and ``recovered`` (pure)."""
    same_state = since.offset > 0 and since.offset == top.offset and since.epoch == top.epoch
    if latest is None:
        return [], same_state
    if latest.offset != top.offset:  # the engine's top is newer than what it returned
        return [], False
    return ([] if same_state else [latest]), True


async def last_value_result(node: Node, channel: str, options: ChannelOptions,
                            since: StreamPosition | None, positioned: bool,
                            ) -> tuple[dict[str, Any], int]:
    """The subscribe result of a cache-mode subscription and the offset it covers.

    Like ``Node.recover`` the node subscribes to the channel on the engine first, so a
    publication of another node cannot fall between the read and the subscription.
    Error handling: engine errors propagate (the subscribe fails with a server error).
    """
    if node.remote:
        await node.engine.subscribe(channel)
    latest, top = await node.cache.latest(channel, options)
    asked = since if since is not None else StreamPosition(0, "")
    pubs, recovered = cache_recovered(latest, top, asked)
    result: dict[str, Any] = {"epoch": top.epoch, "recoverable": True,
                              "was_recovering": True, "recovered": recovered}
    if positioned:
        result["positioned"] = True
    if recovered:
        result["offset"] = asked.offset
        result["publications"] = [publication_dict(p) for p in pubs]
    else:
        result["offset"] = top.offset
    # Whatever the shard buffered after the top is delivered after the result.
    return result, top.offset
