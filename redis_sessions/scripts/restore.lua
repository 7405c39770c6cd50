-- Put a whole session into Redis in one step: a restore from the backing store, or a read-through
-- that brings back a session Redis no longer has. Two processes doing it at once cannot interleave:
-- the second finds the first's session and leaves it alone.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = events channel,
-- KEYS[5] = the slot's dirty index (a restored session is as clean as the store it came from; an
-- imported one, ARGV field synced_seq 0, is listed there for write-behind), KEYS[6] = tokens list,
-- KEYS[7] / KEYS[8] = the tenant ledger hash and live zset of the session's slot (only from a store
-- with tenant limits: the session is counted anew, never refused: it was the tenant's already)
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = token (the new incarnation's epoch),
-- ARGV[4] = ttl in ms (0 = never), ARGV[5] = max messages (0 = unbounded), ARGV[6] = '' to refuse
-- a live session, '1' to replace it, '!' to replace it only if eviction took its list or ids (a
-- repair: never over a whole session, which may hold writes not yet in the backing store),
-- '=<epoch>:<seq>' to replace it only if it is still that incarnation at that seq (a schema
-- upgrade in place: compare-and-set), ARGV[7] = seq (of the last message), ARGV[8] / ARGV[9] = created_at / updated_at
-- in microseconds ('' = now), ARGV[10] = n, ARGV[11] = the messages' token counts, comma-separated
-- ('' = not counted), ARGV[12 .. 11 + 2n] = field, value pairs (model, max_turns, system_message,
-- m:<key>), then message id, encoded message, message id, ...
-- Returns {0} restored, {4} a session with this id is live (and ARGV[6] is ''), {3, seq} the
-- session changed since it was read (ARGV[6] = '=...').
-- Status (redis_sessions._protocol.Status): OK CONFLICT EXISTS
local meta, list, ids = KEYS[1], KEYS[2], KEYS[3]
local mode = ARGV[6]
local upgrade = string.sub(mode, 1, 1) == '='
local live = redis.call('EXISTS', meta) == 1
if live and mode == '' then
  return {4}
end
if live and mode == '!' then
  local seq = tonumber(redis.call('HGET', meta, 'seq')) or 0
  if seq == 0 or redis.call('EXISTS', list, ids) == 2 then
    return {4}  -- whole (repaired by another process already, or nothing to lose)
  end
end
if upgrade then
  local h = redis.call('HMGET', meta, 'epoch', 'seq')
  if mode ~= '=' .. (h[1] or '') .. ':' .. (h[2] or '') then
    return {3, h[2] or 0}
  end
end
local tenant = tenant_of(KEYS[7], KEYS[8], meta, nil)
tenant_forget(tenant)
redis.call('DEL', meta, list, ids, KEYS[6])
if not upgrade then  -- an upgrade keeps the session's place in the dirty index, and its epoch
  redis.call('ZREM', KEYS[5], session_of(meta))
end
if live and not upgrade then
  redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[4], 0)
end
local t = redis.call('TIME')
local now = string.format('%s%06d', t[1], tonumber(t[2]))
local seq = tonumber(ARGV[7])
redis.call('HSET', meta, 'schema_version', ARGV[1], 'codec', ARGV[2], 'create_token', ARGV[3],
  'epoch', ARGV[3], 'seq', seq, 'created_at', ARGV[8] ~= '' and ARGV[8] or now,
  'updated_at', ARGV[9] ~= '' and ARGV[9] or now, 'ttl_ms', ARGV[4], 'max_messages', ARGV[5])
local first = 12 + 2 * tonumber(ARGV[10])
for i = 12, first - 1, 1000 do
  redis.call('HSET', meta, unpack(ARGV, i, math.min(i + 999, first - 1)))
end
-- Messages in chunks (unpack() of thousands of values would overflow the Lua stack); the last one
-- has the session's seq, so seqs and the idempotency index continue where they left off.
local count = (#ARGV - first + 1) / 2
local position = seq - count
for c = first, #ARGV, 1000 do
  local payloads, scored = {}, {}
  for i = c, math.min(c + 999, #ARGV), 2 do
    position = position + 1
    payloads[#payloads + 1] = ARGV[i + 1]
    scored[#scored + 1] = position
    scored[#scored + 1] = ARGV[i]
  end
  redis.call('RPUSH', list, unpack(payloads))
  redis.call('ZADD', ids, unpack(scored))
end
-- The counts, kept as the appends keep them (context.lua reads them while tokens_seq is the seq).
if ARGV[11] ~= '' and count > 0 then
  local counts, total = {}, 0
  for n in string.gmatch(ARGV[11], '%d+') do
    counts[#counts + 1] = n
    total = total + tonumber(n)
    if #counts == 1000 then
      redis.call('RPUSH', KEYS[6], unpack(counts))
      counts = {}
    end
  end
  if #counts > 0 then
    redis.call('RPUSH', KEYS[6], unpack(counts))
  end
  redis.call('HSET', meta, 'tokens', total, 'tokens_seq', seq)
end
local max = tonumber(ARGV[5])
if max > 0 and count > max then
  redis.call('LTRIM', list, -max, -1)
  redis.call('LTRIM', KEYS[6], -max, -1)
  redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - max)
end
local ttl = tonumber(ARGV[4])
if tenant then
  local stored = 0
  for _, body in ipairs(redis.call('LRANGE', list, 0, -1)) do
    stored = stored + #body
  end
  tenant_record(tenant, stored, ttl, t[1] * 1000 + math.floor(t[2] / 1000))
end
local state = redis.call('HMGET', meta, 'durable', 'synced_seq')
if state[1] == '1' and (tonumber(state[2]) or 0) < seq then
  ttl = 0  -- durable and not yet all in the backing store: no TTL until it is, and listed as dirty
  local t = redis.call('TIME')
  mark_dirty(KEYS[5], meta, t)
end
if ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
  if count > 0 then
    redis.call('PEXPIRE', list, ttl)
    redis.call('PEXPIRE', ids, ttl)
    redis.call('PEXPIRE', KEYS[6], ttl)
  end
end
return {0}
