"""Lua scripts of ``chorus backup`` / ``chorus restore`` (see broker.backup).

Each touches the keys of one channel (all tagged ``{channel}``) or of one user's inbox
(tagged ``{user}``), so it runs atomically on one server, and on one Cluster slot.
"""

from __future__ import annotations

from broker.engine.redis_scripts import Script

__all__ = ["COMMIT_CHANNEL", "READ_CHANNEL", "READ_INBOX", "RESTORE_INBOX", "STAGE",
           "STAGING_TTL_MS"]

STAGING_TTL_MS = 3_600_000  # a restore cut short leaves no staging key for long

# KEYS: meta, stream. Returns {now ms, {e, t}, meta pttl, stream pttl, entries}.
READ_CHANNEL = Script("""
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return {now, redis.call('hmget', KEYS[1], 'e', 't'), redis.call('pttl', KEYS[1]),
        redis.call('pttl', KEYS[2]), redis.call('xrange', KEYS[2], '-', '+')}
""")

# KEYS: stream, read set. Returns {now ms, stream pttl, read pttl, read ids, entries}.
READ_INBOX = Script("""
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return {now, redis.call('pttl', KEYS[1]), redis.call('pttl', KEYS[2]),
        redis.call('smembers', KEYS[2]), redis.call('xrange', KEYS[1], '-', '+')}
""")

# KEYS: staging stream. ARGV: id1, body1, ... Appends in order; keeps the key an hour.
STAGE = Script(f"""
for i = 1, #ARGV, 2 do redis.call('xadd', KEYS[1], ARGV[i], 'd', ARGV[i + 1]) end
redis.call('pexpire', KEYS[1], {STAGING_TTL_MS})
return 1
""")

# KEYS: meta, stream, staging. ARGV: new epoch, top, prior epoch, meta ttl ms, stream
# ttl ms (0 = none). Returns 1 restored, 0 skipped (the channel holds publications).
COMMIT_CHANNEL = Script("""
if redis.call('hget', KEYS[1], 'e') then
  local t = tonumber(redis.call('hget', KEYS[1], 't') or '0')
  if t > 0 or redis.call('exists', KEYS[2]) == 1 then
    redis.call('del', KEYS[3])
    return 0
  end
end
redis.call('del', KEYS[1], KEYS[2])
if redis.call('exists', KEYS[3]) == 1 then
  redis.call('rename', KEYS[3], KEYS[2])
  if tonumber(ARGV[5]) > 0 then redis.call('pexpire', KEYS[2], ARGV[5])
  else redis.call('persist', KEYS[2]) end
end
redis.call('hset', KEYS[1], 'e', ARGV[1], 't', ARGV[2], 'pe', ARGV[3], 'pt', ARGV[2])
if tonumber(ARGV[4]) > 0 then redis.call('pexpire', KEYS[1], ARGV[4]) end
return 1
""")

# KEYS: stream, read set. ARGV: stream ttl ms, read ttl ms (0 = none), entry count n,
# then per entry: id, field count k, k field/value pairs; then read ids.
# Returns 1 restored, 0 skipped (the inbox exists).
RESTORE_INBOX = Script("""
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('del', KEYS[2])
local i, n = 4, tonumber(ARGV[3])
for _ = 1, n do
  local id, k = ARGV[i], tonumber(ARGV[i + 1])
  local fields = {}
  for j = 1, 2 * k do fields[j] = ARGV[i + 1 + j] end
  redis.call('xadd', KEYS[1], id, unpack(fields))
  i = i + 2 + 2 * k
end
for j = i, #ARGV do redis.call('sadd', KEYS[2], ARGV[j]) end
if n > 0 and tonumber(ARGV[1]) > 0 then redis.call('pexpire', KEYS[1], ARGV[1]) end
if tonumber(ARGV[2]) > 0 and redis.call('exists', KEYS[2]) == 1 then
  redis.call('pexpire', KEYS[2], ARGV[2])
end
return 1
""")
