"""The PostgreSQL outbox consumer: publish what the application committed to a table.

The application inserts a row (``method``, ``payload`` JSON, ``partition``) into the
outbox table inside its own transaction, so the row exists exactly when the rest of
that transaction does. The table is Centrifugo's (README "Publishing from a database
transaction")::

    id BIGSERIAL PRIMARY KEY, method TEXT, payload JSONB (or BYTEA/TEXT), partition INT

How rows are consumed, per partition ``0..num_partitions-1``, each by its own worker:

1. In one transaction: take the partition's advisory lock with
   ``pg_try_advisory_xact_lock`` (keyed by table and partition, so every Chorus node
   and consumer on the table agree), select its oldest rows ``ORDER BY id ... FOR
   UPDATE SKIP LOCKED``, publish them one by one through the node, delete those the
   engine acknowledged, commit. A node that does not get the lock leaves the partition
   to its holder for this round: one partition, one consumer at a time, partitions in
   parallel (across nodes too).
2. Then wait for a ``NOTIFY`` on ``partition_notification_channel`` (payload: the
   partition number, sent by a trigger) or ``partition_poll_interval``, whichever comes
   first; a full batch polls again at once.

Guarantees: at least once, and exactly once for subscribers within the engine's
idempotency window (see ``broker.consumers.commands``): a node that dies after
publishing but before its commit leaves the rows in place, the next holder publishes
them again and the engine suppresses them. Rows of one partition are published in
``id`` order; rows of one partition committed by concurrent transactions can get ids in
a different order than their commits, so write a partition from one transaction at a
time (lock the entity the partition stands for) where order matters.

Error handling: database, network and engine failures are retried with backoff, in
order (the failed row first), counted in the consumer's stats; a row that can never be
published (see ``InvalidMessage``) is deleted, logged and counted. Anything else fails
the owning actor, whose supervisor restarts it (rows not yet deleted are redelivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from broker.config.consumers import PostgresConsumerConfig
from broker.consumers.commands import InvalidMessage, decode, dispatch
from broker.consumers.state import LAG_CAP, Backoff, Batch, ConsumerStats

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.consumers.postgresql")

TEMPORARY = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
LAG_INTERVAL = 2.0  # seconds between lag probes
QUERY_TIMEOUT = 30.0  # one statement; a silent network partition must not hang a worker
MAX_POOL = 16  # connections per node besides the LISTEN one; more partitions share them


class PostgresOutboxConsumer:
    """Consumes one outbox table for one node (see the module docstring)."""

    def __init__(self, node: Node, name: str, config: PostgresConsumerConfig,
                 stats: ConsumerStats) -> None:
        self.node, self.name, self.config, self.stats = node, name, config, stats
        table = config.outbox_table_name  # validated: an identifier, maybe schema-qualified
        self.table = table
        self._select = (f"SELECT id, method, payload FROM {table} WHERE partition = $1 "
                        "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED")
        self._delete = f"DELETE FROM {table} WHERE id = ANY($1::bigint[])"
        self._lag = f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {LAG_CAP}) AS waiting"
        self._wakeups = [asyncio.Event() for _ in range(config.num_partitions)]
        self._pool: Any = None

    async def run(self) -> None:
        """Consume until cancelled. Never returns; raises only on a bug (see above)."""
        cfg = self.config
        # min_size=0: a database that is down at start is a retried error, not a crash.
        self._pool = await asyncpg.create_pool(
            cfg.dsn, min_size=0, max_size=min(cfg.num_partitions, MAX_POOL) + 1,
            command_timeout=QUERY_TIMEOUT, max_inactive_connection_lifetime=60.0)
        try:
            async with asyncio.TaskGroup() as group:
                if cfg.partition_notification_channel:
                    group.create_task(self._listen())
                group.create_task(self._probe_lag())
                for partition in range(cfg.num_partitions):
                    group.create_task(self._partition(partition))
        finally:
            # Closing the sockets makes the server roll back a batch in flight: its rows
            # stay and are redelivered (and suppressed by their idempotency keys).
            self._pool.terminate()
            self.stats.owned.clear()

    # -- one partition -------------------------------------------------------------------
    async def _partition(self, partition: int) -> None:
        wake, backoff = self._wakeups[partition], Backoff()
        lock = f"chorus_outbox:{self.table}:{partition}"
        owned = self.stats.owned
        while True:
            wake.clear()  # a NOTIFY arriving while the batch runs wakes the next wait
            try:
                batch = await self._process_once(partition, lock)
            except TEMPORARY as error:
                owned.discard(str(partition))
                self.stats.error(error)
                log.warning("consumer %s partition %d: %r; retrying", self.name, partition,
                            error)
                await asyncio.sleep(backoff.next())
                continue
            if batch is None:  # another consumer holds the partition this round
                owned.discard(str(partition))
                await self._wait(wake)
                continue
            owned.add(str(partition))
            batch.account(self.stats)
            if batch.failure is not None:
                log.warning("consumer %s partition %d: publish failed (%r); retrying in "
                            "order", self.name, partition, batch.failure)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            if not batch.more_waiting:
                await self._wait(wake)

    async def _wait(self, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), self.config.partition_poll_interval)

    async def _process_once(self, partition: int, lock: str) -> Batch[Any] | None:
        """One batch of the partition in one transaction; None if another holds it (or
        the node is draining)."""
        if self.node.draining:  # publishes are refused now; the stop is near
            return None
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", lock):
                return None
            rows = await conn.fetch(self._select, partition, self.config.partition_select_limit)
            batch: Batch[Any] = Batch(list(rows), self.config.partition_select_limit)
            await self._publish(batch)
            if batch.finished:  # deleted in the same transaction: gone only on commit
                await conn.execute(self._delete, [row["id"] for row in batch.finished])
        return batch

    async def _publish(self, batch: Batch[Any]) -> None:
        node = self.node
        known = node.config.channel_options
        while (row := batch.next()) is not None:
            try:
                command = decode(str(row["method"]), _payload(row["payload"]),
                                 f"outbox:{self.table}:{row['id']}",
                                 lambda channel: known(channel) is not None)
                redelivered = await dispatch(node, command)
            except InvalidMessage as error:
                log.warning("consumer %s: row %s dropped, it can never be published: %s",
                            self.name, row["id"], error)
                batch.skip()
                continue
            except Exception as error:  # engine down, node draining: retry from this row
                batch.failed(error)
                return
            batch.done(redelivered)

    # -- LISTEN and lag ------------------------------------------------------------------
    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            partition = int(payload)
        except ValueError:
            log.warning("consumer %s: NOTIFY payload %r is not a partition number",
                        self.name, payload)
            return
        if 0 <= partition < len(self._wakeups):
            self._wakeups[partition].set()

    async def _listen(self) -> None:
        """Hold a LISTEN connection, re-made after any loss (polling covers the gap)."""
        channel, backoff = self.config.partition_notification_channel, Backoff()
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.config.dsn, timeout=QUERY_TIMEOUT)
                await conn.add_listener(channel, self._notified)
                backoff.reset()
                for wake in self._wakeups:  # rows committed while not listening
                    wake.set()
                while True:  # a cheap query now and then finds a silently dead socket
                    await asyncio.sleep(5.0)
                    await conn.fetchval("SELECT 1", timeout=QUERY_TIMEOUT)
            except TEMPORARY as error:
                log.info("consumer %s: LISTEN %s lost (%r); polling meanwhile", self.name,
                         channel, error)
                await asyncio.sleep(backoff.next())
            finally:
                if conn is not None:
                    conn.terminate()

    async def _probe_lag(self) -> None:
        """Rows waiting in the table (capped at ``LAG_CAP``), every ``LAG_INTERVAL``."""
        while True:
            try:
                async with self._pool.acquire() as conn:
                    self.stats.probed(int(await conn.fetchval(self._lag)))
            except TEMPORARY as error:  # the partition workers count the failure
                log.debug("consumer %s: lag probe failed: %r", self.name, error)
            await asyncio.sleep(LAG_INTERVAL)


def outbox_ddl(table: str = "chorus_outbox", notification_channel: str = "") -> str:
    """SQL that creates an outbox table Chorus (and Centrifugo) consume, its index, and
    with ``notification_channel`` the trigger that NOTIFYs the partition of every row."""
    index = table.replace(".", "_")
    sql = f"""
CREATE TABLE IF NOT EXISTS {table} (
    id BIGSERIAL PRIMARY KEY,
    method TEXT NOT NULL,
    payload JSONB NOT NULL,
    partition INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {index}_partition_id ON {table} (partition, id);
"""
    if notification_channel:
        sql += f"""
CREATE OR REPLACE FUNCTION {index}_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{notification_channel}', NEW.partition::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER {index}_notify AFTER INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {index}_notify();
"""
    return sql


def _payload(value: Any) -> bytes | str:
    """The payload column as JSON text: JSONB/JSON/TEXT arrive as str, BYTEA as bytes."""
    if value is None:
        raise InvalidMessage("payload is NULL")
    return value if isinstance(value, bytes | str) else bytes(value)
