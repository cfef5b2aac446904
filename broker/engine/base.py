"""Engine contracts: role-split Protocols whose docstrings state the guarantees.

An engine carries only the node-to-node leg. Local fan-out is the shards' job: the node
publishes through the engine, gets the stored Publication back and fans it out to its own
subscribers itself; the engine delivers to the *other* nodes, whose handlers it calls.
So an engine never calls a handler for a message its own node sent (an engine whose
transport echoes messages back, like Redis PUB/SUB, must drop its own by node id), and
the memory engine, with no other node, never calls a handler at all.

Every implementation declares conformance for mypy at the end of its module::

    if TYPE_CHECKING:
        _: type[Engine] = MemoryEngine
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from broker.types import ClientInfo, Publication, StreamPosition

__all__ = [
    "Broker",
    "ControlHandler",
    "Engine",
    "EngineError",
    "JoinLeaveHandler",
    "PresenceManager",
    "PublicationHandler",
    "SuppressedPublish",
    "UnconfirmedPublish",
    "UnrecoverablePosition",
]


class EngineError(Exception):
    """A temporary engine failure (lost connection, timeout, engine closed).

    The caller answers the client with "internal" (which is temporary: clients retry)
    and may retry itself; nothing is known about whether the operation took effect.
    """


class UnconfirmedPublish(EngineError):
    """A publication was stored and sent to the other nodes, but fewer replicas than
    required confirmed it in time (``engine.redis.replica_acks``): a failover now could
    lose it, so it is not acknowledged. ``result`` is what the publish produced.

    The caller still fans it out locally (every other node got it too, so this node's
    subscribers must not be the only ones without it) and answers the publisher with a
    temporary error: the publisher may retry, ideally with an idempotency key.
    """

    def __init__(self, result: tuple[Publication, StreamPosition], confirmed: int,
                 required: int) -> None:
        super().__init__(f"publication stored but confirmed by {confirmed} of {required} "
                         "replicas in time; not acknowledged (retry with an idempotency key)")
        self.result = result


class UnrecoverablePosition(Exception):
    """A history position that cannot be continued.

    Raised by ``history(since=...)`` when the epoch differs from the stream's (the stream
    was lost or recreated) or when publications right after ``since`` are no longer
    held (trimmed by size or expired). The caller decides what that means: for a
    subscription recovery it answers ``recovered=False`` and the client re-syncs.
    """


class SuppressedPublish(tuple[Publication, StreamPosition]):
    """The result of a publish whose idempotency key was already used.

    It unpacks like every publish result (``pub, pos = result``) and holds the earlier
    Publication and position; ``isinstance(result, SuppressedPublish)`` tells the caller
    the publication was already delivered and must not be fanned out again.
    """

    __slots__ = ()


class PublicationHandler(Protocol):
    """Called by the engine for a publication that arrived from ANOTHER node."""

    def __call__(self, channel: str, pub: Publication, position: StreamPosition | None, /) -> None:
        """Handle one remote publication; ``position`` is None for channels without history."""


ControlHandler = Callable[[bytes], None]
JoinLeaveHandler = Callable[[str, ClientInfo], None]


class Broker(Protocol):
    """PUB/SUB between nodes plus per-channel history streams."""

    def set_handlers(
        self,
        on_publication: PublicationHandler,
        on_control: ControlHandler,
        on_join: JoinLeaveHandler | None = None,
        on_leave: JoinLeaveHandler | None = None,
        on_unrecoverable: Callable[[str], None] | None = None,
    ) -> None:
        """Set the callbacks for messages from other nodes; call once, before start().

        ``on_unrecoverable(channel)``: publications of ``channel`` were missed while the
        link was down and cannot be recovered (stream lost or trimmed); subscribers must
        re-sync. Engines without a remote leg never call it.
        """

    async def start(self) -> None:
        """Connect and start background work; after it returns every method may be called."""

    async def close(self) -> None:
        """Stop background work and release resources; idempotent; later calls raise EngineError."""

    async def run_link(self) -> None:
        """Own the long-lived node-to-node machinery (readers, reconnect loops, liveness
        checks) for as long as this coroutine runs; the engine link actor runs it as its
        effect, so that machinery lives and dies with the actor.

        Cancelled (the actor ended): the machinery stops; a later call starts it again,
        re-subscribes every channel and catches up, exactly as after a lost connection.
        Raises EngineError when the machinery fails by itself (the actor then fails and
        its supervisor restarts it). Returns at once when there is nothing to own.
        """

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
        """Publish to other nodes at most once; returns the stored Publication to fan out locally.

        ``delta`` is carried to every node as ``Publication.delta`` (see there).

        History is kept when ``history_size`` > 0 and ``history_ttl`` > 0: appending to
        history and publishing to other nodes are atomic per channel, and offsets are
        dense and increasing by one per channel within an epoch; the stream keeps the
        last ``history_size`` publications and lives ``history_ttl`` seconds after the
        last publish. Without history the Publication has offset 0 and the position is
        ``StreamPosition(0, "")``. ``Publication.time`` is the acceptance time (unix ms).
        With ``idempotency_key``, a second publish to the same channel with the same key
        within ``idempotent_ttl`` seconds (0 = 300 s) publishes nothing and returns a
        SuppressedPublish holding the earlier result.

        Error handling: raises EngineError on a temporary failure; the publication may
        or may not have been stored and delivered.
        """
        ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        """Tell other nodes a client joined the channel; at most once."""

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        """Tell other nodes a client left the channel; at most once."""

    async def publish_control(self, data: bytes) -> None:
        """Send a control message to every other node, at most once (not to this node)."""

    async def subscribe(self, channel: str) -> None:
        """Start receiving other nodes' messages for the channel; idempotent."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving other nodes' messages for the channel; idempotent."""

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
        history_ttl: float = 0.0,
    ) -> tuple[list[Publication], StreamPosition]:
        """Read the channel's stream; returns (publications, the stream's top position).

        ``limit``: 0 = no publications (only the position), -1 = all, n > 0 = at most n.
        Without ``since``: the oldest first (the newest first when ``reverse``).
        With ``since``: offsets > since.offset oldest first, or with ``reverse`` offsets
        < since.offset newest first. Reading a channel that has no stream creates an
        empty one, so the epoch a subscriber is given stays valid until the stream is
        lost. The stream's meta (epoch and top) is kept for at least the engine's
        history meta TTL and at least ``history_ttl`` from now.

        An empty ``since.epoch`` matches any epoch (Centrifugo's rule: a client that
        keeps only offsets, e.g. from its own database, recovers from that offset in
        the current epoch).

        For a channel this node subscribes to, every other node's publication up to the
        top it answers (in the epoch the node knows) has reached the publication handler,
        or the channel was reported unrecoverable, before it returns: a subscriber
        positioned at that top is handed none of them again.

        Error handling: raises UnrecoverablePosition when ``since.epoch`` is set and is
        not the current epoch, or (forward reads) when since.offset is beyond the top or the
        publications after it fell out of the window. Raises EngineError on a temporary
        failure.
        """
        ...

    async def remove_history(self, channel: str) -> None:
        """Drop the channel's publications but keep its epoch and top offset.

        The next publish continues at top + 1 in the same epoch: a client at the top
        still recovers (with nothing), a client behind gets UnrecoverablePosition —
        exactly what happens when history TTL expires (centrifuge does the same).
        """


class PresenceManager(Protocol):
    """Who is subscribed to a channel, across all nodes."""

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, ttl: float
    ) -> None:
        """Insert or refresh a client; it disappears ``ttl`` seconds (> 0) after its last add."""

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        """Remove a client (``user`` is its user id, for per-user counts); idempotent."""

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """The live clients of the channel by client id; never includes expired ones."""
        ...

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """(number of live clients, number of distinct users) in the channel."""
        ...


class OccupancyManager(Protocol):
    """Which nodes hold a key (say, the Pusher channel whose local subscribers they
    have), across all nodes: the first node in and the last node out learn that they
    are, so a cluster-wide "occupied"/"vacated" is announced once."""

    async def occupy(self, key: str, node: str, ttl: float) -> bool:
        """Insert or refresh ``node`` under ``key``; it disappears ``ttl`` seconds (> 0)
        after its last occupy. True iff no live node held ``key`` before; atomic, so of
        nodes racing to occupy an empty key exactly one gets True."""
        ...

    async def vacate(self, key: str, node: str) -> bool:
        """Remove ``node`` from ``key``; True iff it held it and no live node holds it
        now (atomic as ``occupy``); idempotent (a second vacate is False)."""
        ...


class Engine(Broker, PresenceManager, OccupancyManager, Protocol):
    """A Broker, a PresenceManager and an OccupancyManager in one; ``name`` is shown in
    logs and metrics."""

    name: str
