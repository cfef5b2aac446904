"""Plain state of the async consumers, no I/O and no loop: tested on its own.

- ``ConsumerStats``: one consumer's counters (rows processed, redeliveries, invalid rows,
  errors, lag, partitions owned), kept by the node so they outlive actor restarts and
  are read at scrape time by ``broker.metrics`` and by the admin API.
- ``ConsumerBoard``: the stats of every enabled consumer, by name.
- ``Batch``: one batch of rows of one partition walked in order: what is done (to be
  deleted or acknowledged), where it stopped and why.
- ``Backoff``: the retry delay after temporary failures.
- ``Lease``: ownership of a Redis stream by time (acquired, renew due, still valid).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from broker.config.consumers import ConsumerConfig

Row = TypeVar("Row")

LAG_CAP = 100_000  # lag probes count at most this many waiting rows (cheap on big tables)


@dataclass
class ConsumerStats:
    """Counters of one consumer; plain ints, incremented by its workers."""

    name: str
    type: str
    processed: int = 0  # rows/entries published (or found already published) and removed
    redeliveries: int = 0  # publishes the engine had already seen (idempotency key)
    invalid: int = 0  # rows that can never be published (bad JSON, unknown method...)
    errors: int = 0  # temporary failures (database, Redis, engine), each retried
    lag: int | None = None  # rows/entries waiting at the last probe; None before one
    lag_at: float = 0.0
    owned: set[str] = field(default_factory=set)  # partitions (streams) held at the last try
    partitions: int = 0
    starts: int = 0  # incarnations of the consumer actor (1 + restarts)
    last_error: str = ""
    last_error_at: float = 0.0

    def error(self, error: BaseException | str, now: float | None = None) -> None:
        self.errors += 1
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.last_error_at = time.time() if now is None else now

    def probed(self, lag: int, now: float | None = None) -> None:
        self.lag = lag
        self.lag_at = time.time() if now is None else now

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "processed": self.processed,
                "redeliveries": self.redeliveries, "invalid": self.invalid,
                "errors": self.errors, "lag": self.lag, "lag_at": self.lag_at,
                "lag_capped": self.lag is not None and self.lag >= LAG_CAP,
                "owned": sorted(self.owned), "partitions": self.partitions,
                "starts": self.starts, "last_error": self.last_error,
                "last_error_at": self.last_error_at}


class ConsumerBoard:
    """The stats of every enabled consumer of the config, by name, in config order."""

    def __init__(self, consumers: Iterable[ConsumerConfig]) -> None:
        self.stats: dict[str, ConsumerStats] = {}
        for consumer in consumers:
            if consumer.enabled:
                partitions = (consumer.postgresql.num_partitions
                              if consumer.type == "postgresql"
                              else len(consumer.redis_stream.streams))
                self.stats[consumer.name] = ConsumerStats(consumer.name, consumer.type,
                                                          partitions=partitions)

    def __iter__(self) -> Any:
        return iter(self.stats.values())

    def __len__(self) -> int:
        return len(self.stats)

    def get(self, name: str) -> ConsumerStats:
        return self.stats[name]

    def as_list(self) -> list[dict[str, Any]]:
        return [stats.as_dict() for stats in self.stats.values()]


class Batch(Generic[Row]):
    """Rows of one partition, dispatched strictly in order until one fails temporarily.

    ``done`` rows (published, or already published: a redelivery) and ``skipped`` rows
    (invalid: they can never be published) are removed from the source; the row that
    failed temporarily and every row after it stay for the next attempt, so the order
    within the partition holds across retries and across nodes.
    """

    def __init__(self, rows: list[Row], limit: int) -> None:
        self.rows = rows
        self.limit = limit
        self.position = 0
        self.finished: list[Row] = []  # done or skipped, in order: remove these
        self.redelivered = 0
        self.skipped = 0
        self.failure: BaseException | None = None

    def next(self) -> Row | None:
        """The next row to dispatch; None once every row is handled or one failed."""
        if self.failure is not None or self.position >= len(self.rows):
            return None
        return self.rows[self.position]

    def done(self, redelivered: bool) -> None:
        self.finished.append(self.rows[self.position])
        self.position += 1
        self.redelivered += int(redelivered)

    def skip(self) -> None:
        self.finished.append(self.rows[self.position])
        self.position += 1
        self.skipped += 1

    def failed(self, error: BaseException) -> None:
        self.failure = error

    @property
    def more_waiting(self) -> bool:
        """A full batch went through cleanly: more rows may wait, poll again at once."""
        return self.failure is None and len(self.rows) >= self.limit

    def account(self, stats: ConsumerStats) -> None:
        """Add this batch's outcome to ``stats``."""
        stats.processed += len(self.finished) - self.skipped
        stats.redeliveries += self.redelivered
        stats.invalid += self.skipped
        if self.failure is not None:
            stats.error(self.failure)


class Backoff:
    """Exponential retry delay with jitter: ``base`` doubling up to ``cap`` seconds."""

    def __init__(self, base: float = 0.05, cap: float = 5.0,
                 rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return delay * (0.5 + self._rng.random() / 2)  # jitter: nodes do not retry in step

    def reset(self) -> None:
        self.attempts = 0


class Lease:
    """Time-based ownership of one stream (the Redis key that holds it has ``ttl``).

    Renewed every third of ``ttl``; a holder whose renewal did not succeed within
    ``ttl`` of the last one must assume another node owns the stream now.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.renewed_at: float | None = None

    @property
    def held(self) -> bool:
        return self.renewed_at is not None

    def acquired(self, now: float) -> None:
        self.renewed_at = now

    def lost(self) -> None:
        self.renewed_at = None

    def renew_due(self, now: float) -> bool:
        return self.renewed_at is not None and now - self.renewed_at >= self.ttl / 3

    def valid(self, now: float) -> bool:
        return self.renewed_at is not None and now - self.renewed_at < self.ttl
