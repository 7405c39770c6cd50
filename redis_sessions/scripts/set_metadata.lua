-- Merge metadata into a session: set some keys, remove others, in one atomic step.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = the slot's dirty index,
-- KEYS[5] = tokens list (its TTL follows the others', or context() would lose the counts first)
-- ARGV[1] = schema version, ARGV[2] = number of fields to set,
-- ARGV[3..] = field, value pairs to set, then fields to delete (all already prefixed 'm:')
-- Refreshes the session's own TTL (its ttl_ms field) on every key; a durable session is marked dirty
-- instead (the sync worker stores the new metadata) and keeps no TTL until then.
-- Returns {0}; {1} not found; {2, version} other schema.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH
local meta = KEYS[1]
local h = redis.call('HMGET', meta, 'schema_version', 'ttl_ms', 'durable')
local refused = version_refusal(h[1], ARGV[1])
if refused then
  return refused
end
local nset = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = string.format('%s%06d', t[1], tonumber(t[2]))
-- The TTL set below is not the deadline an append kept in expiry_ms (push_messages): 0 = none known.
redis.call('HSET', meta, 'updated_at', now, 'expiry_ms', 0)
-- In chunks: unpack() of thousands of values would overflow the Lua stack.
local last_set = 2 + 2 * nset
for i = 3, last_set, 1000 do
  redis.call('HSET', meta, unpack(ARGV, i, math.min(i + 999, last_set)))
end
for i = last_set + 1, #ARGV, 1000 do
  redis.call('HDEL', meta, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(h[2]) or 0
if h[3] == '1' then
  redis.call('ZADD', KEYS[4], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), string.match(meta, '{(.-)}'))
  for _, i in ipairs({1, 2, 3, 5}) do
    redis.call('PERSIST', KEYS[i])
  end
elseif ttl > 0 then
  for _, i in ipairs({1, 2, 3, 5}) do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return {0}
