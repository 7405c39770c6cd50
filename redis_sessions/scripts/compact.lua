-- Begin compacting a session: when its summary and the messages after it pass a token threshold,
-- take the session's compaction lock (not its turn lease) and return what there is to summarise.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = tokens list, KEYS[4] = compaction lock
-- ARGV[1] = schema version, ARGV[2] = over tokens ('' = release the lock ARGV[3] if it is still
-- held: its summarizer failed), ARGV[3] = lock token, ARGV[4] = lock ms
-- The tokens after the summary are the running total minus its summary_base (summarize.lua).
-- Returns {0}: at or under the threshold, nothing done; {8, holder}: another worker holds the lock
-- (it is compacting: skip); {0, codec, summary seq, summary, summary tokens, first seq, counts, items}:
-- the lock is taken (for ARGV[4] ms; summarize.lua releases it), items are every message still
-- listed after the summary, from seq first seq, counts theirs (messages stored before counting
-- count as their encoded bytes / 4); {1} not found; {2, version} other schema; {6, detail} corrupt.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT LEASE_HELD
local meta, list, tokens, lock = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if ARGV[2] == '' then
  if redis.call('GET', lock) == ARGV[3] then
    redis.call('DEL', lock)
  end
  return {0}
end
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'tokens', 'summary', 'summary_seq',
  'summary_tokens', 'summary_base', 'tokens_seq')
local seq, refused = readable_seq(h[1], ARGV[1], h[3])
if refused then
  return refused
end
local summary_tokens = tonumber(h[7]) or 0
local live = summary_tokens + (tonumber(h[4]) or 0) - (tonumber(h[8]) or 0)
if live <= tonumber(ARGV[2]) then
  return {0}
end
local holder = redis.call('GET', lock)
if holder then
  return {8, holder}
end
redis.call('SET', lock, ARGV[3], 'PX', ARGV[4])
local length = redis.call('LLEN', list)
local offset = length  -- the tokens list counts only while tokens_seq is the seq (context.lua)
if h[9] == h[3] then
  offset = length - redis.call('LLEN', tokens)
end
local from = math.max((tonumber(h[6]) or 0) - (seq - length), 0)
local items = redis.call('LRANGE', list, from, -1)
local counts = {}
if from < offset then
  for i = 1, math.min(offset - from, #items) do
    counts[i] = math.ceil(#items[i] / 4)
  end
end
if offset < length then
  for _, n in ipairs(redis.call('LRANGE', tokens, math.max(from - offset, 0), -1)) do
    counts[#counts + 1] = tonumber(n) or 0
  end
end
return {0, h[2], tonumber(h[6]) or 0, h[5] or '', summary_tokens, seq - length + from + 1, counts, items}
