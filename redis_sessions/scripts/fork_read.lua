-- Read what a fork copies, as stored bytes (nothing is decoded): the source's meta hash, its
-- messages 1..at seq still listed, their ids and token counts.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] = ids zset, KEYS[4] = tokens list
-- ARGV[1] = schema version, ARGV[2] = the fork's seq ('' = the session's seq)
-- Returns {0, meta (HGETALL), at seq, items, ids (member, score ...), counts, tokens through at seq};
-- {16, seq} at seq beyond the session's seq; {1} not found; {2, version} other schema;
-- {6, detail} corrupt meta hash; {10} a durable session lost its list to eviction.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT EVICTED AHEAD
local meta, list, ids, tokens = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local h = redis.call('HMGET', meta, 'schema_version', 'seq', 'durable', 'tokens', 'tokens_seq')
local seq, refused = readable_seq(h[1], ARGV[1], h[2])
if refused then
  return refused
end
local at = ARGV[2] == '' and seq or tonumber(ARGV[2])
if at > seq then
  return {16, seq}
end
local length = redis.call('LLEN', list)
if h[3] == '1' and seq > 0 and length == 0 then
  return {10}
end
local last = at - (seq - length) - 1  -- the list position of seq at
local offset = length  -- the tokens list counts only while tokens_seq is the seq (context.lua)
if h[5] == h[2] then
  offset = length - redis.call('LLEN', tokens)
end
local items, counts, after = {}, {}, 0
if last >= 0 then
  items = redis.call('LRANGE', list, 0, last)
  if last >= offset then
    counts = redis.call('LRANGE', tokens, 0, last - offset)
  end
end
if offset < length then
  for _, n in ipairs(redis.call('LRANGE', tokens, math.max(last + 1 - offset, 0), -1)) do
    after = after + (tonumber(n) or 0)
  end
end
local scored = redis.call('ZRANGE', ids, 0, at, 'BYSCORE', 'WITHSCORES')
return {0, redis.call('HGETALL', meta), at, items, scored, counts, (tonumber(h[4]) or 0) - after}
