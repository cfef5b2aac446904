"""ConsumerActor: owns one configured consumer for as long as it lives.

The consumer's ``run()`` (its partition workers, LISTEN connection, lag probe, database
pool or Redis client) is this actor's effect: it starts in ``on_start`` and is cancelled
when the actor stops, fails or is killed, so nothing of a consumer runs unowned.

A graceful stop cancels ``run()`` and waits (at most ``RELEASE_TIMEOUT``) for its
cleanup, so a Redis consumer hands its streams back at once instead of letting another
node wait for the leases to lapse.

Failure policy: a permanent child of the ``consumers`` supervisor. Temporary trouble
(database or Redis down, engine errors) is retried inside ``run()`` and only counted;
anything else escaping ``run()`` fails this actor and the supervisor starts a fresh
consumer, whose unfinished rows or entries are redelivered (and suppressed by their
idempotency keys if they had been published).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actors import Actor
from broker.config.consumers import ConsumerConfig

if TYPE_CHECKING:
    from broker.node import Node


RELEASE_TIMEOUT = 2.0


class ConsumerActor(Actor):
    kind = "consumer"

    def __init__(self, node: Node, config: ConsumerConfig) -> None:
        self.node = node
        self.config = config
        self.stats = node.consumers.get(config.name)
        self._run: asyncio.Task[Any] | None = None

    def on_start(self) -> None:
        self.stats.starts += 1
        self.stats.owned.clear()
        self._run = self.run_effect(self._consumer().run(), on_result=self._returned,
                                    on_error=self._failed)

    def on_stop_requested(self, reason: str) -> bool:
        run = self._run
        if run is None or run.done():
            return True
        run.cancel()  # its callbacks never run now: the effect ended by cancellation
        self.run_effect(_settle(run), on_result=lambda _: self.stop(),
                        on_error=lambda _: self.stop())
        return False

    def _consumer(self) -> Any:
        config, node = self.config, self.node
        if config.type == "postgresql":
            # Imported on demand: asyncpg is needed only by nodes with an outbox consumer.
            from broker.consumers.postgres import PostgresOutboxConsumer

            return PostgresOutboxConsumer(node, config.name, config.postgresql, self.stats)
        from broker.consumers.redis_stream import RedisStreamConsumer

        token = f"{node.name}:{node.uid}:{self.stats.starts}"
        return RedisStreamConsumer(node, config.name, config.redis_stream, self.stats, token)

    def _returned(self, _: Any) -> None:
        raise RuntimeError(f"consumer {self.config.name} stopped by itself")

    def _failed(self, error: BaseException) -> None:
        self.stats.error(error)
        raise error  # fail: the supervisor starts a fresh consumer

    def receive(self, message: Any) -> Any:
        if message == "status":
            return self.stats.as_dict()
        return super().receive(message)


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled task's cleanup (bounded)."""
    await asyncio.wait({task}, timeout=RELEASE_TIMEOUT)
