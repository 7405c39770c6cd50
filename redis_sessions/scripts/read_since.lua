-- Refresh a cached history: return only what was appended since, or everything if the cache is stale.
-- KEYS[1] = meta hash, KEYS[2] = messages list
-- ARGV[1] = schema version, ARGV[2] = cached epoch, ARGV[3] = cached seq, ARGV[4] = cached first seq,
-- ARGV[5] = '1' to return the whole meta hash, '0' for its codec only
-- Returns {0, meta, epoch, seq, length, first, items}: items are list positions first..end; first == 0
-- means the whole list (another incarnation of the id, or the cache no longer reaches the list's head);
-- {1} not found; {2, version} other schema; {6, detail} corrupt meta hash;
-- {10} a durable session lost its list or ids to eviction (the store restores it and retries).
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT EVICTED
local meta, list = KEYS[1], KEYS[2]
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'epoch', 'seq', 'durable')
local seq, refused = readable_seq(h[1], ARGV[1], h[4])
if refused then
  return refused
end
local length = redis.call('LLEN', list)
if h[5] == '1' and seq > 0 and length == 0 then
  return {10}
end
local first = 0
local fresh = seq - tonumber(ARGV[3])
if h[3] == ARGV[2] and fresh >= 0 and tonumber(ARGV[4]) <= seq - length + 1 then
  first = math.max(0, length - fresh)
end
local head = h[2]
if ARGV[5] == '1' then
  head = redis.call('HGETALL', meta)
end
return {0, head, h[3], seq, length, first, redis.call('LRANGE', list, first, -1)}
