#!lua flags=allow-oom
-- Record that the backing record now holds some sessions up to a seq each; a session it holds all of
-- (and whose metadata did not change since it was read) leaves the dirty index and gets its TTL and
-- trimming back. It may run when Redis is out of memory (allow-oom, Redis >= 7): it is what makes
-- sessions evictable again, so refusing it would leave a full Redis full for good.
-- KEYS[1] .. KEYS[6] = meta hash, messages list, ids zset, tombstone (left by delete), dirty index
-- and tokens list of the first session, KEYS[6i-5] .. KEYS[6i] of the i-th (on a cluster all in one
-- slot). The tokens list is trimmed and expires with the list (it kept no TTL while dirty).
-- ARGV[1] = the worker's record id, then per session ARGV[3i-1] = epoch read,
-- ARGV[3i] = seq the record now holds, ARGV[3i+1] = updated_at read (the change token)
-- Returns one reply per session: {0, 1} clean, {0, 0} still dirty (written to meanwhile); {1} gone
-- without a delete (evicted or expired: the record's copy is all there is now); {11} deleted (this
-- very incarnation); {3, epoch} another incarnation of the id (restored, or created again);
-- {13, record id} bound to another record: nothing changed.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND CONFLICT DELETED OTHER_RECORD
local replies = {}
for i = 1, #KEYS / 6 do
  local meta, list, ids, tomb, index, tokens = KEYS[6 * i - 5], KEYS[6 * i - 4], KEYS[6 * i - 3],
    KEYS[6 * i - 2], KEYS[6 * i - 1], KEYS[6 * i]
  local epoch, upto, token = ARGV[3 * i - 1], tonumber(ARGV[3 * i]), ARGV[3 * i + 1]
  local sid = string.match(meta, '{(.-)}')
  local h = redis.call('HMGET', meta, 'epoch', 'seq', 'ttl_ms', 'max_messages', 'synced_seq', 'updated_at',
    'record')
  local reply
  if not h[2] then
    redis.call('ZREM', index, sid)
    reply = redis.call('GET', tomb) == epoch and {11} or {1}
  elseif h[1] ~= epoch then
    reply = {3, h[1] or ''}
  elseif h[7] and h[7] ~= ARGV[1] then
    reply = {13, h[7]}
  else
    local seq = tonumber(h[2])
    if upto > (tonumber(h[5]) or 0) then
      redis.call('HSET', meta, 'synced_seq', upto)
    end
    if upto < seq or h[6] ~= token then
      if upto > (tonumber(h[5]) or 0) then
        -- Written to since it was read: what is pending now was written after that read, not when
        -- the session first became dirty, so the entry's age (lag().seconds) starts again here.
        local t = redis.call('TIME')
        redis.call('ZADD', index, 'XX', t[1] * 1000 + math.floor(t[2] / 1000), sid)
      end
      reply = {0, 0}
    else
      redis.call('ZREM', index, sid)
      local max = tonumber(h[4]) or 0
      if max > 0 and redis.call('LLEN', list) > max then
        redis.call('LTRIM', list, -max, -1)
        redis.call('LTRIM', tokens, -max, -1)
        redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - max)
      end
      local ttl = tonumber(h[3]) or 0
      if ttl > 0 then
        redis.call('PEXPIRE', meta, ttl)
        redis.call('PEXPIRE', list, ttl)
        redis.call('PEXPIRE', ids, ttl)
        redis.call('PEXPIRE', tokens, ttl)
        redis.call('HDEL', meta, 'expiry_ms')  -- not the deadline an append keeps (push_messages)
      end
      reply = {0, 1}
    end
  end
  replies[i] = reply
end
return replies
