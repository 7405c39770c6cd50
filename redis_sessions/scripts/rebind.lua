-- Move one durable session's write-behind bookkeeping from the old backing record to a new one, once
-- the new record holds a copy of what the old one held (redis-sessions rebind).
-- KEYS[1] = meta hash, KEYS[2] = the dirty index of the session's slot
-- ARGV[1] = old record id, ARGV[2] = new record id, ARGV[3] = the seq the new record's copy holds
-- Returns {0} rebound (or already bound to the new record); {1} not found (gone meanwhile);
-- {3, synced seq} the old record took more meanwhile (copy again and retry);
-- {13, record id} bound to a third record: nothing changed.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND CONFLICT OTHER_RECORD
local meta = KEYS[1]
local h = redis.call('HMGET', meta, 'seq', 'synced_seq', 'record', 'durable')
if not h[1] then
  return {1}
end
if h[3] == ARGV[2] then
  return {0}
end
if h[3] and h[3] ~= ARGV[1] then
  return {13, h[3]}
end
local copied, synced, seq = tonumber(ARGV[3]), tonumber(h[2]) or 0, tonumber(h[1]) or 0
if synced > copied then
  return {3, synced}
end
redis.call('HSET', meta, 'record', ARGV[2], 'synced_seq', copied, 'durable', 1)
if seq > copied then  -- the new record lacks the rest: its workers deliver it from Redis
  local t = redis.call('TIME')
  mark_dirty(KEYS[2], meta, t)
end
return {0}
