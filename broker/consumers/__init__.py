"""Async consumers: publish from the application's own database transaction (a
PostgreSQL outbox table) or from Redis streams. See ``postgres``, ``redis_stream``; the
actor that owns each is in ``actor``; counters and loop-free logic in ``state``."""
