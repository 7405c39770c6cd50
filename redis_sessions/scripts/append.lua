-- Append messages atomically, skipping ids already stored (idempotent appends).
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset (message id -> seq),
-- KEYS[4] = lease hash, KEYS[5] = events channel (sharded on Redis >= 7; watchers listen there),
-- KEYS[6] = the dirty index of the session's slot (used when the session is durable),
-- KEYS[7] = tokens list (each message's token count; the meta keeps their running total, tokens)
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = expected seq ('' = any),
-- ARGV[4] = fencing token ('' = none: sessions without leases), ARGV[5] = the messages' token
-- counts, comma-separated, ARGV[6..] = message id, encoded message, message id, encoded message, ...
-- Finishing a streamed reply (store.stream(...).finish) passes three keys before the tokens list,
-- KEYS[7] = reply stream, KEYS[8] = replies hash, KEYS[9] = deltas channel (KEYS[10] = tokens list),
-- and ARGV[5] = ms to keep the stream after it (the counts then at ARGV[6], the pairs from ARGV[7],
-- one pair: the reply's final message). A store with tenant limits passes its ledger after them all:
-- KEYS[8] / KEYS[9] (KEYS[11] / KEYS[12] when finishing a reply) = the tenant ledger hash and live
-- zset of the session's slot (_preamble.lua's tenant_of). The message is
-- stored and the reply closed in one step: {m = id, f = seq, n = deltas} added to the stream,
-- <id>:st = 'f'; a closed reply refuses it ({14, state}).
-- Trimming and TTL follow the session's own ttl_ms / max_messages fields (set by create). A durable
-- session (one with a backing store) is listed in the dirty index until the sync worker has stored
-- it, keeps no TTL meanwhile, and is never trimmed below its first message not yet stored there.
-- A call whose messages are all stored already changes nothing but the meta's replays counter.
-- Returns {0, seq}: seq of the last given message (the session's seq when any was new; {0, seq, 1}
-- when all were stored already: a replay);
-- {1} not found; {2, version} other schema; {5, codec} other codec; {3, seq} expected seq differs;
-- {6, detail} the meta hash is corrupt; {9, token} the fencing token is not the live lease's;
-- {10} a durable session lost its list or ids to eviction (the store restores it and retries);
-- {17, limit, size} the new bodies would take the session past its max_bytes (nothing stored);
-- {18, what, usage, add, allowed} the tenant's ledger has no room for them (nothing stored).
-- A session created with a byte limit keeps the meta's bytes (the stored bodies' total) beside
-- tokens; bytes_seq says up to which seq it is right (a pop or restore leaves it behind: summed anew).
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CONFLICT CODEC CORRUPT LEASE_LOST EVICTED REPLY_CLOSED QUOTA TENANT
local meta, list, ids = KEYS[1], KEYS[2], KEYS[3]
local nkeys = (#KEYS == 9 or #KEYS == 12) and #KEYS - 2 or #KEYS  -- the ledger's two keys after them
local pairs_from = nkeys == 10 and 7 or 6
local h, seq, refused = writable_meta(meta, ARGV[1], ARGV[2], 'tokens', 'tokens_seq', 'max_bytes', 'expiry_ms')
if refused then
  return refused
end
-- A durable session with messages always has its list and ids; if eviction took one of them
-- (volatile-* policies evict key by key), appending now would build on a hole.
if h[6] == '1' and seq > 0 and redis.call('EXISTS', list, ids) < 2 then
  return {10}
end
if #ARGV < pairs_from then
  return {0, seq}
end

-- A replay (a retry after a lost reply) finds all its messages stored and changes nothing but the
-- meta's replays counter, which is also a write that replicates, so a WAIT after this call covers
-- the original write, whichever connection made it. {0, seq of its last message, 1} (the 1 says
-- "a replay", for telemetry), or nil when any message is not stored. A replay wins over every
-- refusal: its write was done, while it could be. (It reads KEYS and ARGV, not this chunk's locals:
-- a closure over them would cost every call, replay or not, an allocation per local.)
local function replayed(from)
  local last = 0
  for i = from, #ARGV, 2 do
    local stored = redis.call('ZSCORE', KEYS[3], ARGV[i])
    if not stored then
      return nil
    end
    last = math.max(last, tonumber(stored))
  end
  redis.call('HINCRBY', KEYS[1], 'replays', 1)
  return {0, last, 1}
end

-- The refusals come first, so that a call that passes them costs one ZADD NX to find which of its
-- messages are new (below); a refused call is answered by replayed(pairs_from) when it is a replay.
-- Fencing: a writer whose lease expired or was taken over must not write, however late it wakes.
if ARGV[4] ~= '' then
  local live = redis.call('HGET', KEYS[4], 'token')
  if live ~= ARGV[4] then
    refused = {9, live or ''}
  end
end
if not refused and ARGV[3] ~= '' and tonumber(ARGV[3]) ~= seq then
  refused = {3, seq}
end
-- Finishing a streamed reply: refused once the reply is closed.
local reply
if not refused and pairs_from == 7 then
  reply = redis.call('HMGET', KEYS[8], ARGV[7] .. ':st', ARGV[7] .. ':n')
  if reply[1] == 'f' then
    refused = {14, 'finished'}
  elseif reply[1] == 'a' then
    refused = {14, 'aborted'}
  end
end
if refused then
  return replayed(pairs_from) or refused
end

-- Closing a streamed reply: the function push_messages runs after the message is stored and before
-- the watchers' notice, in this one step. A plain append passes no function.
local finish
if pairs_from == 7 then
  finish = function(at, publish)
    local id, replies = ARGV[7], KEYS[8]
    redis.call('XADD', KEYS[7], '*', 'm', id, 'f', at, 'n', reply[2] or 0)
    redis.call('HSET', replies, id .. ':st', 'f', id .. ':s', at)
    local open = reply[1] and redis.call('HINCRBY', replies, 'open', -1)
      or tonumber(redis.call('HGET', replies, 'open') or 0)
    if open <= 0 or redis.call('PTTL', KEYS[7]) < 0 then
      redis.call('PEXPIRE', KEYS[7], ARGV[5])
      redis.call('PEXPIRE', replies, ARGV[5])
    end
    redis.call(publish, KEYS[9], at)
  end
end

-- Which messages are new? One ZADD NX indexes each id at the seq it will get and says how many it
-- added: all of them (the common case), and that call was the whole check. Ids stored already sit
-- at or below seq, so any added here is one scored above it. (Up to 500 messages: larger batches,
-- rare, take the loop below, as unpack() of a very large batch would overflow the Lua stack.)
-- Each message's token count (context.lua reads them), kept as it is stored (push_messages): as the
-- string given, digits only (a number would be formatted again for the command), else 0.
-- The meta's fields after writable_meta's: tokens (7), tokens_seq (8), max_bytes (9), expiry_ms (10).
local count = (#ARGV - pairs_from + 1) / 2
local counted = {key = KEYS[nkeys], counts = nil, total = tonumber(h[7]) or 0, restart = h[8] ~= h[3],
  expiry = h[10], at = nil, tenant = nil, sized = nil}
if nkeys < #KEYS then  -- tenant limits: the ledger of the session's slot (push_messages)
  counted.tenant = tenant_of(KEYS[nkeys + 1], KEYS[nkeys + 2], meta, list)
end
if h[9] and h[9] ~= '0' and (tonumber(h[9]) or 0) > 0 then  -- the byte limit (max_bytes, set by create): push_messages
  counted.sized = sized_meta(meta, tonumber(h[9]), h[3])
end
if count == 1 then  -- one message (the common call): its new seq formatted once, and no loop
  local given = ARGV[pairs_from - 1]
  counted.counts = #given <= 15 and string.find(given, '^%d+$') and given or 0
  local at = tostring(seq + 1)
  if redis.call('ZADD', ids, 'NX', at, ARGV[pairs_from]) == 0 then
    return replayed(pairs_from)
  end
  counted.at = at
  local last, failed = push_messages(KEYS, ARGV, pairs_from, h, seq, finish, true, counted)
  return failed or {0, last}
end
local counts = {}
for n in string.gmatch(ARGV[pairs_from - 1], '%d+') do
  counts[#counts + 1] = n
end
counted.counts = counts
if count <= 500 then
  local scored = {}
  for k = 1, count do
    scored[2 * k - 1] = seq + k
    scored[2 * k] = ARGV[pairs_from + 2 * k - 2]
  end
  local added = redis.call('ZADD', ids, 'NX', unpack(scored))
  if added == count then
    local fresh = {}
    for k = 1, count do
      fresh[k] = pairs_from + 2 * k - 2
    end
    local last, failed = push_messages(KEYS, ARGV, fresh, h, seq, finish, true, counted)
    return failed or {0, last}
  elseif added == 0 then
    return replayed(pairs_from)
  end
  -- Some stored already, or an id given twice: take back what was added, then sort it out below.
  for k = 1, count do
    local id = scored[2 * k]
    local at = redis.call('ZSCORE', ids, id)
    if at and tonumber(at) > seq then
      redis.call('ZREM', ids, id)
    end
  end
end

local fresh, seen, last = {}, {}, 0
for i = pairs_from, #ARGV, 2 do
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
  return replayed(pairs_from)
end
local tallies = {}
for k, i in ipairs(fresh) do
  tallies[k] = counts[(i - pairs_from) / 2 + 1]
end
counted.counts = tallies
local last, failed = push_messages(KEYS, ARGV, fresh, h, seq, finish, false, counted)
return failed or {0, last}
