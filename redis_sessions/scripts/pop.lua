-- Remove the last message and return it, atomically: two processes popping at once never get the
-- same message. Safe to retry: a call whose token is the last pop's returns that pop's message again
-- instead of popping another.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = lease hash (unused),
-- KEYS[5] = events channel, KEYS[6] = dirty index (unused), KEYS[7] = tokens list (the popped
-- message's count goes with it, off the running total; its TTL is refreshed with the others')
-- ARGV[1] = schema version, ARGV[2] = token (unique per call; it also becomes the session's epoch)
-- Returns {0, codec, position, payload}: the popped message and its list position, or {0} when the
-- session holds no message; {1} not found; {2, version} other schema; {6, detail} corrupt meta hash;
-- {12} a durable session (its backing store keeps every message: not supported).
-- A pop rewrites history: seq goes down by one (the next append takes the popped seq again) and the
-- epoch changes, so cached histories are read again whole and watchers end, as on a re-create.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT DURABLE
local meta, list, ids = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'ttl_ms', 'durable', 'pop_token', 'tokens_seq')
local seq, refused = readable_seq(h[1], ARGV[1], h[3])
if refused then
  return refused
end
if h[5] == '1' then
  return {12}
end
if h[6] == ARGV[2] then  -- a retry of the last pop: its answer again
  local last = redis.call('HMGET', meta, 'pop_position', 'pop_payload')
  if not last[2] then
    return {0}
  end
  return {0, h[2], tonumber(last[1]), last[2]}
end
local payload = redis.call('RPOP', list)
if not payload then
  redis.call('HSET', meta, 'pop_token', ARGV[2])
  redis.call('HDEL', meta, 'pop_position', 'pop_payload')
  return {0}
end
local position = redis.call('LLEN', list)
redis.call('ZREMRANGEBYSCORE', ids, seq, seq)
if h[7] == h[3] then  -- the counts line up with the list (context.lua): keep them so
  local count = tonumber(redis.call('RPOP', KEYS[7]) or 0) or 0
  redis.call('HSET', meta, 'tokens_seq', seq - 1)
  redis.call('HINCRBY', meta, 'tokens', -count)
end
-- A byte total (max_bytes) is summed again by the next append; the TTL set below is not the
-- deadline an append kept in expiry_ms (push_messages): the next append sets every key's again.
redis.call('HDEL', meta, 'bytes_seq', 'expiry_ms')
local t = redis.call('TIME')
redis.call('HSET', meta, 'seq', seq - 1, 'epoch', ARGV[2], 'pop_token', ARGV[2], 'pop_position', position,
  'pop_payload', payload, 'updated_at', string.format('%s%06d', t[1], tonumber(t[2])))
local ttl = tonumber(h[4]) or 0
if ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', list, ttl)
  redis.call('PEXPIRE', ids, ttl)
  redis.call('PEXPIRE', KEYS[7], ttl)
end
redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[5], seq - 1)
return {0, h[2], position, payload}
