-- Publish a fork: rename its staged copies into place and write its meta hash, in one step, so the
-- new session is never visible half-made (staged keys that a crash leaves behind expire unseen).
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = tokens list (the new
-- session's), KEYS[5] = staged messages, KEYS[6] = staged ids, KEYS[7] = staged tokens,
-- KEYS[8] = the dirty index of the new session's slot (used when it is durable), KEYS[9] / KEYS[10] =
-- the tenant ledger hash and live zset of its slot (only from a store with tenant limits)
-- ARGV[1] = parent session id, ARGV[2] = fork seq ('' when the caller asked for none: any will do),
-- ARGV[3] = the fork's seq as copied, ARGV[4] = staged message count, ARGV[5] = create token,
-- ARGV[6..] = field, value pairs for the meta hash (the source's configuration and metadata)
-- Returns {0} published, or published already by a call for the same parent and seq (a retry:
-- its staged copies are dropped); {4} the id is another session's; {6, detail} the staged copies
-- are gone (expired before publishing: the caller stages again); {18, what, usage, add, allowed} the
-- tenant's ledger has no room for the new session (nothing published: the staged copies stay).
-- Status (redis_sessions._protocol.Status): OK EXISTS CORRUPT TENANT
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then
  redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
  local h = redis.call('HMGET', meta, 'parent', 'fork_seq')
  if h[1] == ARGV[1] and (ARGV[2] == '' or h[2] == ARGV[2]) then
    return {0}
  end
  return {4}
end
local count = tonumber(ARGV[4])
if redis.call('LLEN', KEYS[5]) ~= count then
  return {6, 'the staged copy of the fork expired before it was published'}
end
local tenant, forked = tenant_of(KEYS[9], KEYS[10], meta, nil), 0
if tenant then
  tenant_forget(tenant)  -- an expired incarnation of this id
  for _, body in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
    forked = forked + #body
  end
  local full = tenant_room(tenant, forked)
  if full then
    return full
  end
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local t = redis.call('TIME')
local now = string.format('%s%06d', t[1], tonumber(t[2]))
redis.call('HSET', meta, 'create_token', ARGV[5], 'epoch', ARGV[5], 'seq', ARGV[3], 'created_at', now,
  'updated_at', now, 'parent', ARGV[1], 'fork_seq', ARGV[3])
for i = 6, #ARGV, 1000 do
  redis.call('HSET', meta, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = tonumber(redis.call('HGET', meta, 'ttl_ms') or 0) or 0
local durable = redis.call('HGET', meta, 'durable') == '1'
for i = 2, 4 do
  if redis.call('EXISTS', KEYS[i + 3]) == 1 then
    redis.call('RENAME', KEYS[i + 3], KEYS[i])
    if i == 4 then
      redis.call('HSET', meta, 'tokens_seq', ARGV[3])  -- the counts are the fork's (context.lua)
    end
    if durable or ttl <= 0 then
      redis.call('PERSIST', KEYS[i])
    else
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
tenant_record(tenant, forked, ttl, t[1] * 1000 + math.floor(t[2] / 1000))
if durable then
  mark_dirty(KEYS[8], meta, t)
elseif ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
end
return {0}
