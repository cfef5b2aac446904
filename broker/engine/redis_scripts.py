"""Lua scripts of the Redis engine and a runner that calls them by SHA.

Each script touches only the keys of one channel (all tagged ``{channel}``, see
redis_codec), so it runs on one Cluster slot. Redis runs a script atomically: that is
what makes "append to the stream and publish" atomic and offsets dense per channel.

Times inside scripts come from Redis' own ``TIME`` (presence expiry), so nodes with
skewed clocks agree; TTLs are passed in milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

__all__ = [
    "ADD_PRESENCE",
    "GET_PRESENCE",
    "HISTORY",
    "OCCUPY",
    "PUBLISH",
    "REMOVE_PRESENCE",
    "SCRIPTS",
    "VACATE",
    "VERIFY",
    "Script",
]


class Script:
    """A Lua script called with EVALSHA, falling back to EVAL when the server lacks it.

    EVAL also caches the script server-side, so after a restart or failover (the
    script cache is empty there) one call pays the full text and the rest go by SHA.
    ``client`` is a redis.asyncio Redis or RedisCluster (both route by the first key).

    Error handling: Redis errors other than NOSCRIPT propagate unchanged.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


# KEYS: stream, meta, idempotency key (the meta key when there is none)
# ARGV: body, history size, history ttl ms, meta ttl ms, new epoch, pub/sub channel,
#       idempotent ttl ms ("0" = no key), publish command ("publish" | "spublish")
# Returns {suppressed 0|1, message}. A missing meta (never written, expired, evicted,
# or Redis restarted without persistence) gets the new epoch and a stale stream is
# dropped, so offsets restart at 1 under an epoch no client holds.
PUBLISH = Script("""
if ARGV[7] ~= '0' then
  local earlier = redis.call('get', KEYS[3])
  if earlier then return {1, earlier} end
end
local msg
local size = tonumber(ARGV[2])
if size > 0 then
  local epoch = redis.call('hget', KEYS[2], 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('del', KEYS[1])
    redis.call('hset', KEYS[2], 'e', epoch)
  end
  local top = redis.call('hincrby', KEYS[2], 't', 1)
  redis.call('xadd', KEYS[1], 'MAXLEN', size, top .. '-0', 'd', ARGV[1])
  redis.call('pexpire', KEYS[1], ARGV[3])
  local keep = math.max(tonumber(ARGV[3]), tonumber(ARGV[4]))
  if redis.call('pttl', KEYS[2]) < keep then redis.call('pexpire', KEYS[2], keep) end
  msg = 'p' .. top .. ':' .. epoch .. ':' .. ARGV[1]
else
  msg = 'p0::' .. ARGV[1]
end
redis.call(ARGV[8], ARGV[6], msg)
if ARGV[7] ~= '0' then redis.call('set', KEYS[3], msg, 'PX', ARGV[7]) end
return {0, msg}
""")

# KEYS: stream, meta
# ARGV: meta ttl ms, new epoch, since offset ("" = none), since epoch, limit (-1 all,
#       0 none, n), reverse "1"/"0", create "1"/"0"
# An empty since epoch matches any epoch (Centrifugo's rule for clients that keep only
# offsets). A restored channel (broker.backup) has a new epoch and keeps the backup's as
# "pe" with its top "pt": a since in "pe" at or below "pt" names publications the
# restore brought back unchanged, so it reads as the same offset in the new epoch; one
# past "pt" names publications lost with the old Redis: "epoch differs".
# Returns {top, epoch, status, id1, body1, ...}; status 0 ok, 1 epoch differs,
# 2 offset beyond top, 3 publications after since no longer held. With create "0" a
# missing meta is not made: {0, "", 0} (the engine's own catch-up reads must not
# litter Redis with metas of channels that never had history).
HISTORY = Script("""
local epoch = redis.call('hget', KEYS[2], 'e')
local top = 0
if not epoch and ARGV[7] == '0' then return {0, '', 0} end
if not epoch then
  epoch = ARGV[2]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 't', 0)
else
  top = tonumber(redis.call('hget', KEYS[2], 't') or '0')
end
if redis.call('pttl', KEYS[2]) < tonumber(ARGV[1]) then redis.call('pexpire', KEYS[2], ARGV[1]) end
local limit = tonumber(ARGV[5])
local reverse = ARGV[6] == '1'
local result = {top, epoch, 0}
local lo, hi = '-', '+'
if ARGV[3] ~= '' then
  local since = tonumber(ARGV[3])
  if ARGV[4] ~= '' and ARGV[4] ~= epoch then
    local prior = redis.call('hmget', KEYS[2], 'pe', 'pt')
    if prior[1] ~= ARGV[4] or since > tonumber(prior[2]) then
      result[3] = 1
      return result
    end
  end
  if reverse then
    hi = '(' .. since .. '-0'
  else
    if since > top then result[3] = 2; return result end
    local first = top + 1
    local head = redis.call('xrange', KEYS[1], '-', '+', 'COUNT', 1)
    if #head > 0 then first = tonumber(string.match(head[1][1], '^%d+')) end
    if since + 1 < first then result[3] = 3; return result end
    lo = '(' .. since .. '-0'
  end
end
if limit == 0 then return result end
local entries
local cmd = reverse and 'xrevrange' or 'xrange'
local a, b = lo, hi
if reverse then a, b = hi, lo end
if limit > 0 then
  entries = redis.call(cmd, KEYS[1], a, b, 'COUNT', limit)
else
  entries = redis.call(cmd, KEYS[1], a, b)
end
for _, entry in ipairs(entries) do
  result[#result + 1] = entry[1]
  result[#result + 1] = entry[2][2]
end
return result
""")

# KEYS: stream, meta, probe
# ARGV: epoch, new epoch, pub/sub channel, publish command, server ("" = unknown),
#       force "1"/"0", seen offset, then (offset, sha1 of the body) pairs
# Checks publications of one channel that the replicas did not confirm (see
# broker.engine.redis_doubt) on the server this runs on. The probe write first: the
# WAIT after the script then covers what it read. Held: this is ``server`` (same
# replication id), or the stream reaches ``seen`` and holds every pair unchanged.
# Else, unless the epoch already moved, the channel gets the new epoch (its offsets
# would otherwise be handed out again under the old one) and every node hears it on
# the channel's pub/sub as b"e" <top> b":" <epoch>.
# Returns {status, replication id}; status 0 held, 1 epoch moved or meta gone,
# 2 diverged (moved here).
VERIFY = Script("""
redis.call('set', KEYS[3], '1', 'PX', 60000)
local server = string.match(redis.call('info', 'replication'),
                            'master_replid:(%x+)') or ''
local epoch = redis.call('hget', KEYS[2], 'e')
if epoch ~= ARGV[1] then return {1, server} end
if ARGV[5] ~= '' and ARGV[5] == server then return {0, server} end
local top = tonumber(redis.call('hget', KEYS[2], 't') or '0')
local held = ARGV[6] == '0' and top >= tonumber(ARGV[7])
for i = 8, #ARGV, 2 do
  if not held then break end
  local id = ARGV[i] .. '-0'
  local entry = redis.call('xrange', KEYS[1], id, id)
  held = #entry > 0 and redis.sha1hex(entry[1][2][2]) == ARGV[i + 1]
end
if held then return {0, server} end
redis.call('hset', KEYS[2], 'e', ARGV[2])
redis.call('hdel', KEYS[2], 'pe', 'pt')
redis.call(ARGV[4], ARGV[3], 'e' .. top .. ':' .. ARGV[2])
return {2, server}
""")

_NOW_MS = """
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: expiry zset, info hash.  ARGV: ttl ms, client id, encoded info.
ADD_PRESENCE = Script(_NOW_MS + """
local ttl = tonumber(ARGV[1])
redis.call('zadd', KEYS[1], now + ttl, ARGV[2])
redis.call('hset', KEYS[2], ARGV[2], ARGV[3])
for _, key in ipairs(KEYS) do
  if redis.call('pttl', key) < ttl then redis.call('pexpire', key, ttl) end
end
return 1
""")

# KEYS: expiry zset, info hash.  ARGV: client id.
REMOVE_PRESENCE = Script("""
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
""")

# KEYS: expiry zset, info hash. Drops expired clients (in chunks: Lua's unpack has a
# stack limit), then returns the hash as {client id, info, ...}.
GET_PRESENCE = Script(_NOW_MS + """
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', now)
for i = 1, #expired, 1000 do
  redis.call('hdel', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
if #expired > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', now) end
return redis.call('hgetall', KEYS[2])
""")

# KEYS: occupancy zset (node -> expiry ms).  ARGV: ttl ms, node.
# Drops expired nodes, adds or refreshes this one; returns 1 iff no live node held the
# key before (the first node in).
OCCUPY = Script(_NOW_MS + """
local ttl = tonumber(ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local before = redis.call('zcard', KEYS[1])
local held = redis.call('zscore', KEYS[1], ARGV[2])
redis.call('zadd', KEYS[1], now + ttl, ARGV[2])
if redis.call('pttl', KEYS[1]) < ttl then redis.call('pexpire', KEYS[1], ttl) end
if before == 0 and not held then return 1 end
return 0
""")

# KEYS: occupancy zset.  ARGV: node.
# Drops expired nodes and this one; returns 1 iff this node held the key and no live
# node holds it now (the last node out).
VACATE = Script(_NOW_MS + """
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local removed = redis.call('zrem', KEYS[1], ARGV[1])
if removed == 1 and redis.call('zcard', KEYS[1]) == 0 then return 1 end
return 0
""")

SCRIPTS = (PUBLISH, HISTORY, ADD_PRESENCE, REMOVE_PRESENCE, GET_PRESENCE, OCCUPY, VACATE,
           VERIFY)
