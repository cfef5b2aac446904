"""ConsumerActor: owns one configured consumer for as long as it lives.

The consumer's ``run()`` (its partition workers, LISTEN connection, lag probe, database
pool or Redis client) is this actor's effect: it starts in ``on_start`` and is cancelled
when the actor stops, fails or is killed, so nothing of a consumer runs unowned.

Failure policy: a permanent child of the ``consumers`` supervisor. Temporary trouble
(database or Redis down, engine errors) is retried inside ``run()`` and only counted;
anything else escaping ``run()`` fails this actor and the supervisor starts a fresh
consumer, whose unfinished rows or entries are redelivered (and suppressed by their
idempotency keys if they had been published).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import Actor
from broker.config.consumers import ConsumerConfig

if TYPE_CHECKING:
    from broker.node import Node


class ConsumerActor(Actor):
    kind = "consumer"

    def __init__(self, node: Node, config: ConsumerConfig) -> None:
        self.node = node
        self.config = config
        self.stats = node.consumers.get(config.name)

    def on_start(self) -> None:
        self.stats.starts += 1
        self.stats.owned.clear()
        self.run_effect(self._consumer().run(), on_result=self._returned,
                        on_error=self._failed)

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
