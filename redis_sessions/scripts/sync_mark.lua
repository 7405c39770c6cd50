#!lua flags=allow-oom
-- Record that the backing store now holds a session up to a seq; once it holds all of it (and no
-- metadata changed since it was read), take the session off the dirty index and give it its TTL
-- and trimming back. It may run when Redis is out of memory (allow-oom, Redis >= 7): it is what
-- makes sessions evictable again, so refusing it would leave a full Redis full for good.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = the slot's dirty index,
-- KEYS[5] = the session's tombstone (left by delete)
-- ARGV[1] = epoch read, ARGV[2] = seq now stored, ARGV[3] = updated_at read (the change token)
-- Returns {0, 1} clean, {0, 0} still dirty (written to meanwhile); {1} gone without a delete
-- (evicted or expired: the backing copy is all there is now); {11} deleted (this very incarnation);
-- {3, epoch} another incarnation of the id (restored from the backing store, or created again).
local meta, list, ids = KEYS[1], KEYS[2], KEYS[3]
local sid = string.match(meta, '{(.-)}')
local h = redis.call('HMGET', meta, 'epoch', 'seq', 'ttl_ms', 'max_messages', 'synced_seq', 'updated_at')
if not h[2] then
  redis.call('ZREM', KEYS[4], sid)
  if redis.call('GET', KEYS[5]) == ARGV[1] then
    return {11}
  end
  return {1}
end
if h[1] ~= ARGV[1] then
  return {3, h[1] or ''}
end
local upto, seq = tonumber(ARGV[2]), tonumber(h[2])
if upto > (tonumber(h[5]) or 0) then
  redis.call('HSET', meta, 'synced_seq', upto)
end
if upto < seq or h[6] ~= ARGV[3] then
  return {0, 0}
end
redis.call('ZREM', KEYS[4], sid)
local max = tonumber(h[4]) or 0
if max > 0 and redis.call('LLEN', list) > max then
  redis.call('LTRIM', list, -max, -1)
  redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - max)
end
local ttl = tonumber(h[3]) or 0
if ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', list, ttl)
  redis.call('PEXPIRE', ids, ttl)
end
return {0, 1}
