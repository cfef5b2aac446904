"""Connection journey analytics: every connection's lifecycle as events.

``feed.JournalFeed`` (node side) collects the events connection and shard actors
record, off the per-delivery path, and tells them to the journal actor in one batch per
loop iteration. ``actor.JournalActor`` folds them into the aggregates
(``aggregates.JourneyState``) and writes them to the bounded store (``store`` /
``store_redis``) in batches; ``view`` shapes what the admin API, the server API and the
JSON Lines export serve.
"""
