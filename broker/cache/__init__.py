"""The shards' two-layer cache: L1 channel history in the shard over the engine (L2).

``policy`` (policies, write-behind buffer), ``lru`` (eviction), ``store`` (one shard's
L1, pure), ``layer`` (the node's async glue over the engine), ``lastvalue`` (cache
recovery mode), ``heat`` + ``warm`` (prewarm), ``refresh`` (refresh-ahead under ttl),
``adaptive`` (per-channel policy, pure).
"""
