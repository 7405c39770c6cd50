-- Delete a session (every key, its lease included) and wake its watchers.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = lease hash,
-- KEYS[5] = events channel (sharded on Redis >= 7), KEYS[6] = the slot's dirty index,
-- KEYS[7] = the tombstone: a durable session's epoch, kept an hour, so that a sync worker that was
-- delivering it meanwhile deletes its backing copy instead of writing it back,
-- KEYS[8] = reply stream, KEYS[9] = replies hash (streamed replies go with the session),
-- KEYS[10] = the tool calls hash (claims and results of tool_call.lua), KEYS[11] = tokens list,
-- KEYS[12] = compaction lock
-- KEYS[13] / KEYS[14] = the tenant ledger hash and live zset of the session's slot (only from a
-- store with tenant limits: the session leaves it)
-- Returns the number of keys deleted. (The backing store's copy is the store's to delete.)
-- Status (redis_sessions._protocol.Status): none (the reply is a count of keys deleted)
local h = redis.call('HMGET', KEYS[1], 'durable', 'epoch')
if h[1] == '1' then
  redis.call('SET', KEYS[7], h[2] or '', 'PX', 3600000)
end
tenant_forget(tenant_of(KEYS[13], KEYS[14], KEYS[1], nil))
local n = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('DEL', KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12])
redis.call('ZREM', KEYS[6], session_of(KEYS[1]))
if n > 0 then
  redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[5], '0')
end
return n
