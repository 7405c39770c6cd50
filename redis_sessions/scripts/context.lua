-- The newest messages that fit a token budget after the session's summary, read in one step.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = tokens list (each message's count, its
-- tail aligned with the messages list's tail; older messages stored before counting have none; the
-- list counts only while the meta's tokens_seq is its seq: a script that does not count, a pop or a
-- restore, leaves them apart and the list is not used until an append starts it again)
-- ARGV[1] = schema version, ARGV[2] = the budget in tokens (the summary's count is taken off it),
-- ARGV[3] = cached epoch, ARGV[4] = cached seq, ARGV[5] = cached first seq ('' when nothing is cached)
-- A message without a count counts as its encoded bytes / 4 (rounded up).
-- Returns {0, codec, epoch, seq, start, counts, summary, summary seq, summary tokens, first, items}:
-- the messages at list positions start.. fit the budget, counts are theirs; items are list
-- positions first.. (first > start when the cached history holds start..first-1 already);
-- {1} not found; {2, version} other schema; {6, detail} corrupt meta hash;
-- {10} a durable session lost its list to eviction (the store restores it and retries).
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT EVICTED
local meta, list, tokens = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'epoch', 'durable', 'summary',
  'summary_seq', 'summary_tokens', 'tokens_seq')
local seq, refused = readable_seq(h[1], ARGV[1], h[3])
if refused then
  return refused
end
local length = redis.call('LLEN', list)
if h[5] == '1' and seq > 0 and length == 0 then
  return {10}
end
local base = seq - length  -- the seq just before the list's head
local budget = tonumber(ARGV[2]) - (tonumber(h[8]) or 0)
local floor = math.max((tonumber(h[7]) or 0) - base, 0)  -- the first list position after the summary
local offset = length  -- the list position of the tokens list's head
if h[9] == h[3] then
  offset = length - redis.call('LLEN', tokens)
end
local start, used, full, counts = length, 0, false, {}
while start > floor and not full do
  local lo = math.max(floor, start - 64)
  local counted = {}
  if start - 1 >= math.max(lo, offset) then
    counted = redis.call('LRANGE', tokens, math.max(lo, offset) - offset, start - 1 - offset)
  end
  local raw = {}
  if lo < offset then
    raw = redis.call('LRANGE', list, lo, math.min(start, offset) - 1)
  end
  for p = start - 1, lo, -1 do
    local n
    if p >= offset then
      n = tonumber(counted[p - math.max(lo, offset) + 1]) or 0
    else
      n = math.ceil(#raw[p - lo + 1] / 4)
    end
    if used + n > budget then
      full = true
      break
    end
    used = used + n
    counts[#counts + 1] = n
    start = p
  end
end
-- counts were gathered newest first
local ordered = {}
for i = #counts, 1, -1 do
  ordered[#ordered + 1] = counts[i]
end
local first = start
local cached = tonumber(ARGV[4])
if cached and h[4] == ARGV[3] and cached <= seq and tonumber(ARGV[5]) <= base + start + 1 then
  first = math.max(start, cached - base)
end
local items = {}
if first < length then
  items = redis.call('LRANGE', list, first, -1)
end
return {0, h[2], h[4] or '', seq, start, ordered, h[6] or '', tonumber(h[7]) or 0, tonumber(h[8]) or 0, first, items}
