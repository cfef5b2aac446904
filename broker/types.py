"""Small immutable value types shared by the protocol, the engines and the shards.

Payloads (`data`, `info`) are always ``bytes``: raw JSON for JSON clients, opaque bytes for
protobuf clients. They are never parsed by the broker, so a publication is encoded once per
wire format and the same bytes reach every subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a client is, as shown in presence, join/leave pushes and publications."""

    user: str
    client: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's history stream.

    ``epoch`` changes whenever the stream is lost (engine restart, eviction, history
    removal), so a client holding an old epoch learns that recovery is impossible.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One message published into a channel.

    ``offset`` is 0 for channels without history; otherwise offsets are dense and
    increase by one per publication within an epoch. ``delta``: published with delta
    (the namespace's ``delta_publish`` or the API's ``delta``), so subscribers that
    negotiated fossil deltas get it as a delta against the channel's previous
    publication; it matters only for the live fan-out.
    """

    data: bytes
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] | None = field(default=None, hash=False)
    time: int = 0  # unix milliseconds when the broker accepted it
    delta: bool = False
