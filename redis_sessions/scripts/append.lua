-- Append messages atomically, skipping ids already stored (idempotent appends).
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset (message id -> seq),
-- KEYS[4] = lease hash, KEYS[5] = events channel (sharded on Redis >= 7; watchers listen there),
-- KEYS[6] = the dirty index of the session's slot (used when the session is durable)
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = expected seq ('' = any),
-- ARGV[4] = fencing token ('' = none: sessions without leases),
-- ARGV[5..] = message id, encoded message, message id, encoded message, ...
-- Trimming and TTL follow the session's own ttl_ms / max_messages fields (set by create). A durable
-- session (one with a backing store) is listed in the dirty index until the sync worker has stored
-- it, keeps no TTL meanwhile, and is never trimmed below its first message not yet stored there.
-- A call whose messages are all stored already changes nothing but the meta's replays counter.
-- Returns {0, seq}: seq of the last given message (the session's seq when any was new);
-- {1} not found; {2, version} other schema; {5, codec} other codec; {3, seq} expected seq differs;
-- {6, detail} the meta hash is corrupt; {9, token} the fencing token is not the live lease's;
-- {10} a durable session lost its list or ids to eviction (the store restores it and retries).
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CONFLICT CODEC CORRUPT LEASE_LOST EVICTED
local meta, list, ids = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'ttl_ms', 'max_messages', 'durable',
  'synced_seq')
local refused = version_refusal(h[1], ARGV[1])
if refused then
  return refused
end
if h[2] ~= ARGV[2] then
  return {5, h[2]}
end
local seq = decimal_seq(h[3])
if not seq then
  return corrupt_seq()
end
-- A durable session with messages always has its list and ids; if eviction took one of them
-- (volatile-* policies evict key by key), appending now would build on a hole.
if h[6] == '1' and seq > 0 and redis.call('EXISTS', list, ids) < 2 then
  return {10}
end
if #ARGV < 5 then
  return {0, seq}
end

-- Which messages are new? A retried call finds all of them stored and changes nothing.
local fresh, seen, last = {}, {}, 0
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local stored = seen[id] or redis.call('ZSCORE', ids, id)
  if stored then
    last = math.max(last, tonumber(stored))
  else
    fresh[#fresh + 1] = i
    seen[id] = -1
  end
end
if #fresh == 0 then
  -- A replay (a retry after a lost reply): count it, which is also a write that replicates, so a
  -- WAIT after this call covers the original write, whichever connection made it.
  redis.call('HINCRBY', meta, 'replays', 1)
  return {0, last}
end
-- Fencing: a writer whose lease expired or was taken over must not write, however late it wakes.
if ARGV[4] ~= '' then
  local live = redis.call('HGET', KEYS[4], 'token')
  if live ~= ARGV[4] then
    return {9, live or ''}
  end
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= seq then
  return {3, seq}
end

-- Push in chunks: unpack() of a very large batch would overflow the Lua stack.
local len = 0
local chunk = 500
for c = 1, #fresh, chunk do
  local payloads, scored = {}, {}
  for k = c, math.min(c + chunk - 1, #fresh) do
    local i = fresh[k]
    seq = seq + 1
    payloads[#payloads + 1] = ARGV[i + 1]
    scored[#scored + 1] = seq
    scored[#scored + 1] = ARGV[i]
  end
  len = redis.call('RPUSH', list, unpack(payloads))
  redis.call('ZADD', ids, unpack(scored))
end

local t = redis.call('TIME')
redis.call('HSET', meta, 'seq', seq, 'updated_at', string.format('%s%06d', t[1], tonumber(t[2])))

local durable = h[6] == '1'
local max = tonumber(h[5]) or 0
if durable and max > 0 then
  max = math.max(max, seq - (tonumber(h[7]) or 0))
end
if max > 0 and len > max then
  redis.call('LTRIM', list, -max, -1)
  redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - max)
end
local ttl = tonumber(h[4]) or 0
if durable then
  redis.call('ZADD', KEYS[6], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), string.match(meta, '{(.-)}'))
  if ttl > 0 then
    redis.call('PERSIST', meta)
    redis.call('PERSIST', list)
    redis.call('PERSIST', ids)
  end
elseif ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', list, ttl)
  redis.call('PEXPIRE', ids, ttl)
end
redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[5], seq)
return {0, seq}
