"""The engine's Lua scripts. Each touches the keys of one channel only, so on Redis Cluster (where
those keys share a hash tag, see ``keys.py``) it runs on the one node that owns the channel."""

from __future__ import annotations

from typing import Final

# Publishing: read or create the epoch, increment the offset, append to the stream, trim, set
# TTLs, publish with the offset and epoch in a prefix, and remember the idempotent result:
# atomic per channel, as the Broker seam requires (spec §9.1).
# KEYS: stream, meta, result (a same-slot placeholder when ARGV[8] is '0'), PUB/SUB channel
# ARGV: payload, history_size (0 = no history), history_ttl s, meta_ttl s, new epoch, result_ttl s,
#       publish command ('publish', or 'spublish' for sharded PUB/SUB), '1' = idempotent
PUBLISH: Final = """
local idempotent = ARGV[8] == '1'
if idempotent then
  local cached = redis.call('hmget', KEYS[3], 'e', 's')
  if cached[2] then return {cached[2], cached[1], 1} end
end
local size = tonumber(ARGV[2])
local offset = 0
local epoch = ''
if size > 0 then
  epoch = redis.call('hget', KEYS[2], 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', KEYS[2], 'e', epoch)
    redis.call('del', KEYS[1])
  end
  offset = redis.call('hincrby', KEYS[2], 's', 1)
  if tonumber(ARGV[4]) > 0 then redis.call('expire', KEYS[2], ARGV[4]) end
  redis.call('xadd', KEYS[1], 'MAXLEN', size, offset .. '-0', 'd', ARGV[1])
  redis.call('expire', KEYS[1], ARGV[3])
  redis.call(ARGV[7], KEYS[4], '__p1:' .. offset .. ':' .. epoch .. '__' .. ARGV[1])
else
  redis.call(ARGV[7], KEYS[4], '__p0__' .. ARGV[1])
end
if idempotent then
  redis.call('hset', KEYS[3], 'e', epoch, 's', offset)
  redis.call('expire', KEYS[3], ARGV[6])
end
return {offset, epoch, 0}
"""

# KEYS: stream, meta. ARGV: new epoch, meta_ttl s, since (-1 = none), limit (-1 = all), reverse (0/1)
HISTORY: Final = """
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('del', KEYS[1])
end
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
if tonumber(ARGV[2]) > 0 then redis.call('expire', KEYS[2], ARGV[2]) end
local limit = tonumber(ARGV[4])
if limit == 0 then return {top, epoch, {}} end
local since = tonumber(ARGV[3])
local entries
if ARGV[5] == '1' then
  local from = '+'
  if since >= 0 then from = '(' .. since .. '-0' end
  if limit > 0 then
    entries = redis.call('xrevrange', KEYS[1], from, '-', 'COUNT', limit)
  else
    entries = redis.call('xrevrange', KEYS[1], from, '-')
  end
else
  local from = '-'
  if since >= 0 then from = '(' .. since .. '-0' end
  if limit > 0 then
    entries = redis.call('xrange', KEYS[1], from, '+', 'COUNT', limit)
  else
    entries = redis.call('xrange', KEYS[1], from, '+')
  end
end
return {top, epoch, entries}
"""

# KEYS: presence hash, expiry zset. ARGV: client id, ClientInfo JSON, expires at, key ttl s
PRESENCE_ADD: Final = """
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], ARGV[3], ARGV[1])
redis.call('expire', KEYS[1], ARGV[4])
redis.call('expire', KEYS[2], ARGV[4])
"""

# KEYS: presence hash, expiry zset. ARGV: client id
PRESENCE_REMOVE: Final = """
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
"""

# KEYS: presence hash, expiry zset. ARGV: now
PRESENCE_PURGE: Final = """
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('hdel', KEYS[1], unpack(expired))
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
end
return redis.call('hgetall', KEYS[1])
"""
