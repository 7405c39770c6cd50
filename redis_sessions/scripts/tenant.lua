-- Tenant limits (the store option tenant_quota; redis_sessions.tenant): sweep a slot's ledger and
-- set, give back or credit its allowance; or, on a cluster, grant room from the tenant's central count.
-- Ledger modes:
-- KEYS[1] = the ledger hash of a slot (<session id> -> bytes, bytes = total,
-- allow_sessions / allow_bytes), KEYS[2] = its live zset (session id -> deadline ms), KEYS[3..] = the
-- meta hashes of the sessions whose deadline has passed (the sweep: one that is gone leaves the
-- ledger; one still there gets its real deadline: now + its PTTL, or + its ttl_ms, or +inf).
-- ARGV[1] = 'read' (sweep only), 'set' (one server: the allowance is the limit, ARGV[2] / ARGV[3] =
-- max sessions / max bytes, -1 = none), 'return' (cluster: give back what the allowance holds
-- beyond the usage, so that a quiet slot keeps no room idle), 'credit' (cluster: add ARGV[2] /
-- ARGV[3] to the allowance; -1 = no limit).
-- Returns {0, sessions, bytes, allowed sessions, allowed bytes, given back sessions, given back bytes}.
-- Grant mode (cluster):
-- KEYS[1] = the tenant's central hash (sessions / bytes = granted to slots in
-- all, max_sessions / max_bytes = the limits of the last grant, for redis-sessions stats --tenant), ARGV[1] = 'grant', ARGV[2] / ARGV[3] = sessions / bytes a slot gave back, ARGV[4] / ARGV[5]
-- = sessions / bytes wanted, ARGV[6] / ARGV[7] = the limits (-1 = none), ARGV[8] / ARGV[9] = extra
-- room to grant with them when the limit leaves it (so that the next writes of the slot need no
-- grant). Returns {0, sessions, bytes} granted (-1: that one has no limit) (never past the limits: the total granted bounds the
-- tenant's usage), or {18, what, granted, wanted, limit} (TENANT) when a limit leaves no room.
-- Status (redis_sessions._protocol.Status): OK TENANT
local mode = ARGV[1]
if mode == 'grant' then
  local central = KEYS[1]
  local g = redis.call('HMGET', central, 'sessions', 'bytes')
  local granted = {math.max((tonumber(g[1]) or 0) - tonumber(ARGV[2]), 0),
    math.max((tonumber(g[2]) or 0) - tonumber(ARGV[3]), 0)}
  local names, given = {'sessions', 'bytes'}, {-1, -1}  -- -1: no limit, the slot needs no allowance
  for k = 1, 2 do
    local want, limit, extra = tonumber(ARGV[3 + k]), tonumber(ARGV[5 + k]), tonumber(ARGV[7 + k])
    if limit >= 0 then
      if granted[k] + want > limit then
        redis.call('HSET', central, 'sessions', granted[1], 'bytes', granted[2])  -- what was given back
        return {18, names[k], granted[k], want, limit}
      end
      given[k] = math.min(want + extra, limit - granted[k])
    end
  end
  redis.call('HSET', central, 'sessions', granted[1] + math.max(given[1], 0), 'bytes',
    granted[2] + math.max(given[2], 0), 'max_sessions', ARGV[6], 'max_bytes', ARGV[7])
  return {0, given[1], given[2]}
end

local ledger, live = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 3, #KEYS do
  local meta = KEYS[i]
  local sid = session_of(meta)
  local deadline = tonumber(redis.call('ZSCORE', live, sid) or '+inf')
  if deadline <= now then
    local left = redis.call('PTTL', meta)
    if left == -2 then  -- expired (or evicted): it stops counting
      local bytes = tonumber(redis.call('HGET', ledger, sid) or 0) or 0
      redis.call('HDEL', ledger, sid)
      redis.call('HINCRBY', ledger, 'bytes', 0 - bytes)  -- never '-0', which HINCRBY refuses
      redis.call('ZREM', live, sid)
    elseif left > 0 then
      redis.call('ZADD', live, now + left, sid)
    else
      local ttl = tonumber(redis.call('HGET', meta, 'ttl_ms') or 0) or 0
      redis.call('ZADD', live, ttl > 0 and now + ttl or '+inf', sid)
    end
  end
end
local sessions = redis.call('ZCARD', live)
local h = redis.call('HMGET', ledger, 'bytes', 'allow_sessions', 'allow_bytes')
local bytes, allow = tonumber(h[1]) or 0, {tonumber(h[2]) or 0, tonumber(h[3]) or 0}
local back = {0, 0}
if mode == 'set' then
  allow = {tonumber(ARGV[2]), tonumber(ARGV[3])}
elseif mode == 'return' then
  local used = {sessions, bytes}
  for k = 1, 2 do
    if allow[k] > used[k] then
      back[k] = allow[k] - used[k]
      allow[k] = used[k]
    end
  end
elseif mode == 'credit' then
  for k = 1, 2 do
    local more = tonumber(ARGV[1 + k])
    allow[k] = (more < 0 or allow[k] < 0) and -1 or allow[k] + more
  end
end
if mode ~= 'read' then
  redis.call('HSET', ledger, 'allow_sessions', allow[1], 'allow_bytes', allow[2])
end
return {0, sessions, bytes, allow[1], allow[2], back[1], back[2]}
