-- Record a summary standing for messages 1..through_seq, compare-and-set on the stored summary.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = tokens list, KEYS[4] = compaction lock,
-- KEYS[5] = ids zset, KEYS[6] = the slot's dirty index (a durable session is listed there: the sync
-- worker carries the summary to its record)
-- ARGV[1] = schema version, ARGV[2] = codec name, ARGV[3] = through seq, ARGV[4] = the summary seq
-- the caller read ('' = any, '0' = none), ARGV[5] = the summary's message id, ARGV[6] = the encoded
-- summary, ARGV[7] = its token count, ARGV[8] = the compaction lock's token to release ('' = none),
-- ARGV[9] = '1' to trim the covered messages from Redis (a durable session's only once its backing
-- store holds them: never past its synced_seq), '' to keep them
-- KEYS[7] / KEYS[8] = the tenant ledger hash and live zset of the session's slot (only from a store
-- with tenant limits: trimmed bodies leave it)
-- Unless ARGV[9] asks, nothing is removed: messages() returns every message; context() the summary and
-- the messages after through_seq. Its summary_base is the running token total at through_seq, so
-- the tokens after the summary are the total minus it, however many are appended later.
-- A summary that covers less than the stored one is refused, as is one not built on the summary the
-- caller read. The same summary stored again (a retried call) changes nothing.
-- Returns {0, through seq}; {3, stored summary seq} refused; {16, seq} through seq beyond the
-- session's seq; {1} not found; {2, version} other schema; {5, codec} other codec; {6, detail} corrupt.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CONFLICT CODEC CORRUPT AHEAD
local meta, list, tokens = KEYS[1], KEYS[2], KEYS[3]
local h, seq, refused = writable_meta(meta, ARGV[1], ARGV[2], 'synced_seq', 'summary_seq', 'summary_id', 'tokens',
  'tokens_seq')
if refused then
  return refused
end
local through, stored = tonumber(ARGV[3]), tonumber(h[8]) or 0
if h[9] == ARGV[5] and stored == through then
  return {0, through}
end
if (ARGV[4] ~= '' and tonumber(ARGV[4]) ~= stored) or through < stored then
  return {3, stored}
end
if through > seq then
  return {16, seq}
end
-- The tokens after through_seq: counted ones from the tokens list, others by their size.
local length = redis.call('LLEN', list)
local offset = length  -- the tokens list counts only while tokens_seq is the seq (context.lua)
if h[11] == h[3] then
  offset = length - redis.call('LLEN', tokens)
end
local from = math.max(through - (seq - length), 0)  -- list position of through_seq + 1
local after = 0
if from < length then
  if offset < length then
    for _, n in ipairs(redis.call('LRANGE', tokens, math.max(from - offset, 0), -1)) do
      after = after + (tonumber(n) or 0)
    end
  end
  if from < offset then
    for _, raw in ipairs(redis.call('LRANGE', list, from, offset - 1)) do
      after = after + math.ceil(#raw / 4)
    end
  end
end
redis.call('HSET', meta, 'summary', ARGV[6], 'summary_id', ARGV[5], 'summary_seq', through,
  'summary_tokens', ARGV[7], 'summary_base', (tonumber(h[10]) or 0) - after)
if ARGV[9] == '1' then
  local upto = through
  if h[6] == '1' then
    upto = math.min(upto, tonumber(h[7]) or 0)
  end
  local drop = upto - (seq - length)  -- list positions 0 .. drop - 1 are covered
  if drop > 0 then
    local tenant, dropped = tenant_of(KEYS[7], KEYS[8], meta, nil), 0
    if tenant then
      for _, body in ipairs(redis.call('LRANGE', list, 0, drop - 1)) do
        dropped = dropped + #body
      end
      tenant_shift(tenant, -dropped)
    end
    redis.call('LTRIM', list, drop, -1)
    if drop > offset then
      redis.call('LTRIM', tokens, drop - offset, -1)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', upto)
  end
end
if h[6] == '1' then
  local t = redis.call('TIME')
  mark_dirty(KEYS[6], meta, t)
end
if ARGV[8] ~= '' and redis.call('GET', KEYS[4]) == ARGV[8] then
  redis.call('DEL', KEYS[4])
end
return {0, through}
