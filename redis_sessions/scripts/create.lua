-- Create a session: write its meta hash unless the id is taken.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = create token (unique per create call),
-- ARGV[4] = the session's ttl in ms (0 = never expire), ARGV[5] = its max messages (0 = unbounded),
-- ARGV[6..] = field, value pairs (model, max_turns, m:<key> ..., and durable = 1 with a backing store)
-- KEYS[4] = the dirty index of the session's slot: a durable session is listed there until the sync
-- worker has stored it, and gets no TTL until then. KEYS[5] = tokens list (its counts start here:
-- tokens_seq 0, see context.lua). KEYS[6] / KEYS[7] = the tenant ledger hash and live zset of the
-- session's slot (only from a store with tenant limits: _preamble.lua's tenant_of).
-- The ttl and max messages are the session's own: every later write applies them, whichever store
-- (with whatever defaults) makes it, so no key of a session can outlive the others.
-- Returns {0} created (or already created by this very call: a retried create), {4} id taken,
-- {18, 'sessions', usage, 1, allowed} the tenant's ledger has no room for another session.
-- Status (redis_sessions._protocol.Status): OK EXISTS TENANT
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then
  if redis.call('HGET', meta, 'create_token') == ARGV[3] then
    return {0}
  end
  return {4}
end
-- Tenant limits: room for one more session in the ledger (a count left by an expired incarnation
-- of this id goes first).
local tenant = tenant_of(KEYS[6], KEYS[7], meta, nil)
tenant_forget(tenant)
local full = tenant_room(tenant, 0)
if full then
  return full
end
-- Leftovers of a session whose meta hash is gone are not a session: start clean.
redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
local t = redis.call('TIME')
tenant_record(tenant, 0, tonumber(ARGV[4]), t[1] * 1000 + math.floor(t[2] / 1000))
local now = string.format('%s%06d', t[1], tonumber(t[2]))
-- First the fields every append reads, in the order it asks for them (_preamble.lua's writable_meta,
-- then append.lua's), and updated_at, which it writes: a small hash is a flat list, and a field is
-- found after those before it (one it lacks, after all of them). tokens, max_bytes and expiry_ms
-- start as what their absence means to every reader (no count yet, no byte limit, no deadline
-- kept); durable and synced_seq are only ever written for a durable session (the write-behind code
-- reads their presence), and max_bytes and expiry_ms not for one (its record would keep them).
local durable = false
for i = 6, #ARGV - 1, 2 do
  if ARGV[i] == 'durable' then
    durable = ARGV[i + 1] == '1'
  end
end
if durable then
  redis.call('HSET', meta, 'schema_version', ARGV[1], 'codec', ARGV[2], 'seq', '0', 'ttl_ms', ARGV[4],
    'max_messages', ARGV[5], 'durable', '1', 'tokens', '0', 'tokens_seq', '0', 'updated_at', now)
else
  redis.call('HSET', meta, 'schema_version', ARGV[1], 'codec', ARGV[2], 'seq', '0', 'ttl_ms', ARGV[4],
    'max_messages', ARGV[5], 'tokens', '0', 'tokens_seq', '0', 'max_bytes', '0', 'expiry_ms', '0',
    'updated_at', now)
end
-- The token is also the session's first epoch: cached histories of an earlier incarnation of this id
-- carry another epoch, so read_since.lua knows not to extend them.
redis.call('HSET', meta, 'create_token', ARGV[3], 'epoch', ARGV[3], 'created_at', now)
-- In chunks: unpack() of thousands of values would overflow the Lua stack.
for i = 6, #ARGV, 1000 do
  redis.call('HSET', meta, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if durable then
  mark_dirty(KEYS[4], meta, t)
  return {0}
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
end
return {0}
