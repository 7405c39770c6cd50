-- A tool call that runs once: claim it, release the claim, or complete it with its result.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = lease hash,
-- KEYS[5] = events channel, KEYS[6] = the dirty index of the session's slot (KEYS[1..6] as append's),
-- KEYS[7] = the tool calls hash: epoch (the session incarnation its fields belong to), and per
-- tool_use_id a:<id> = attempts so far, c:<id> = '<claim end ms> <claim token> <holder>' while
-- claimed, s:<id> / r:<id> / k:<id> = seq, encoded message and claim token of the stored result,
-- KEYS[8] = tokens list (the result message's token count goes there, as append.lua keeps them)
-- KEYS[9] / KEYS[10] = the tenant ledger hash and live zset of the session's slot (only from a store
-- with tenant limits: _preamble.lua's tenant_of)
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = 'claim' | 'renew' | 'release' | 'complete',
-- ARGV[4] = tool_use_id, ARGV[5] = claim token (unique per claim), ARGV[6] = fencing token ('' = none),
-- ARGV[7] = the result message's id (derived from tool_use_id), ARGV[8] = holder (claim) or the
-- encoded result message (complete), ARGV[9] = claim ttl in ms (claim, renew), ARGV[10] = the
-- attempt the renewing claim was (renew), ARGV[11] = the result message's token count (complete)
-- A stored result is found in the hash, or else by its message id in the ids zset (the hash
-- expires with the session's ttl, and a session read back from its backing store starts a new one).
-- claim: {0, attempt} claimed (or already by this very token: a retry); {20, holder, ms left,
--   attempt} another live claim; {21, attempt, seq, encoded message} a result is stored (encoded
--   message '' when trimming took it); {9, token} the fence is not the live lease's.
-- renew: as claim, but a claim of this token gets ttl ms from now, and one that lapsed with no one
--   claiming after it is taken back (the same attempt; the next one if others claimed meanwhile).
-- release: {0, attempt}, whether or not the claim was still this token's.
-- complete: {0, seq, encoded message, 1} stored by this claim token (now, or by a try whose reply
--   was lost); {0, seq, encoded message, 0} another result was stored first (this one is not);
--   {9, token} fence refused; {17, limit, size} the result would take the session past its max_bytes;
--   {18, what, usage, add, allowed} the tenant's ledger has no room for it.
-- claim and complete: {10} a durable session lost its list or ids to eviction (the store restores
--   it and asks again).
-- All: {1} not found; {2, version} other schema; {5, codec} other codec; {6, detail} corrupt meta.
-- Done and stored answers come before the fence check, as in append.lua: a retry after a lost reply
-- gets the answer even once the lease has moved on; only a write is refused.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CODEC CORRUPT LEASE_LOST EVICTED TOOL_PENDING TOOL_DONE QUOTA TENANT
local meta, list, ids, tools = KEYS[1], KEYS[2], KEYS[3], KEYS[7]
local action, id, token = ARGV[3], ARGV[4], ARGV[5]
local h, seq, refused = writable_meta(meta, ARGV[1], ARGV[2], 'epoch', 'tokens', 'tokens_seq', 'max_bytes',
  'expiry_ms')
if refused then
  return refused
end
local epoch = h[7] or ''
if redis.call('HGET', tools, 'epoch') ~= epoch then
  redis.call('DEL', tools)  -- an earlier incarnation's (the id was deleted and created again)
  redis.call('HSET', tools, 'epoch', epoch)
end
local ttl = tonumber(h[4]) or 0
local function keep(at_least)
  if ttl > 0 then
    redis.call('PEXPIRE', tools, math.max(ttl, at_least))
  end
end
local attempt = tonumber(redis.call('HGET', tools, 'a:' .. id)) or 0

if action == 'release' then
  local claim = redis.call('HGET', tools, 'c:' .. id)
  if claim and string.match(claim, '^%d+ (%x+) ') == token then
    redis.call('HDEL', tools, 'c:' .. id)
  end
  return {0, attempt}
end

-- A durable session with messages always has its list and ids; if eviction took one of them, a
-- stored result may be in the part that went (the store restores it and asks again).
if h[6] == '1' and seq > 0 and redis.call('EXISTS', list, ids) < 2 then
  return {10}
end

-- The stored result, if any: in the hash, or (the hash expired or is new) in the messages.
local function stored()
  local got = redis.call('HMGET', tools, 's:' .. id, 'r:' .. id)
  if got[2] then
    return tonumber(got[1]), got[2]
  end
  local at = redis.call('ZSCORE', ids, ARGV[7])
  if not at then
    return nil
  end
  at = tonumber(at)
  local payload = redis.call('LINDEX', list, at - seq - 1) or ''
  redis.call('HSET', tools, 's:' .. id, at, 'r:' .. id, payload)
  redis.call('HDEL', tools, 'c:' .. id)
  keep(0)
  return at, payload
end

local at, payload = stored()
if at then
  if action ~= 'complete' then
    return {21, attempt, at, payload}
  end
  return {0, at, payload, redis.call('HGET', tools, 'k:' .. id) == token and 1 or 0}
end
if ARGV[6] ~= '' then
  local live = redis.call('HGET', KEYS[4], 'token')
  if live ~= ARGV[6] then
    return {9, live or ''}
  end
end

if action ~= 'complete' then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local claim_ms = tonumber(ARGV[9])
  local claim = redis.call('HGET', tools, 'c:' .. id)
  local mine = false
  if claim then
    local ends, holder_token, holder = string.match(claim, '^(%d+) (%x+) (.*)$')
    mine = holder_token == token
    if mine and action == 'claim' then
      return {0, attempt}  -- a retry of this very claim
    end
    if not mine and tonumber(ends) > now then
      return {20, holder, tonumber(ends) - now, attempt}
    end
  end
  if action == 'claim' or attempt == 0 or (not mine and tonumber(ARGV[10]) ~= attempt) then
    attempt = attempt + 1
  end
  redis.call('HSET', tools, 'a:' .. id, attempt, 'c:' .. id, string.format('%d %s %s', now + claim_ms, token,
    ARGV[8]))
  keep(claim_ms)
  return {0, attempt}
end

-- complete: append the result message and record it, in this one step.
local counted = {key = KEYS[8], counts = {tonumber(ARGV[11]) or 0}, total = tonumber(h[8]) or 0,
  restart = h[9] ~= h[3], expiry = h[11]}
if (tonumber(h[10]) or 0) > 0 then  -- the session's byte limit, as append.lua keeps it (push_messages)
  counted.sized = sized_meta(meta, tonumber(h[10]), h[3])
end
counted.tenant = tenant_of(KEYS[9], KEYS[10], meta, list)  -- tenant limits: as append.lua
local last, failed = push_messages(KEYS, ARGV, {7}, h, seq, nil, false, counted)
if failed then
  return failed
end
redis.call('HSET', tools, 's:' .. id, last, 'r:' .. id, ARGV[8], 'k:' .. id, token)
redis.call('HDEL', tools, 'c:' .. id)
keep(0)
return {0, last, ARGV[8], 1}
