-- Read the messages appended after a sequence number (for watchers catching up).
-- KEYS[1] = meta hash, KEYS[2] = messages list
-- ARGV[1] = schema version, ARGV[2] = after seq, ARGV[3] = at most this many messages
-- A partial watcher passes KEYS[3] = reply stream, KEYS[4] = replies hash, ARGV[4] = the stream
-- entry to read from (inclusive), ARGV[5] = at most this many entries; the reply then ends with
-- the entries and the replies hash (both read in the same step as the messages).
-- Returns {0, codec, epoch, seq, items, first}: items are seqs after+1, after+2, ..., from list position first;
-- {7, first seq still stored} when messages after ARGV[2] were trimmed away;
-- {1} not found; {2, version} other schema; {6, detail} corrupt meta hash.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT TRIMMED
local meta, list = KEYS[1], KEYS[2]
local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'epoch')
local seq, refused = readable_seq(h[1], ARGV[1], h[3])
if refused then
  return refused
end
local after = tonumber(ARGV[2])
local base = seq - redis.call('LLEN', list)  -- the seq just before the list's head
if after < base then
  return {7, base + 1}
end
local items = {}
local first = after - base
if after < seq then
  items = redis.call('LRANGE', list, first, first + tonumber(ARGV[3]) - 1)
end
if KEYS[3] then
  local entries = redis.call('XRANGE', KEYS[3], ARGV[4], '+', 'COUNT', ARGV[5])
  return {0, h[2], h[4] or '', seq, items, first, entries, redis.call('HGETALL', KEYS[4])}
end
return {0, h[2], h[4] or '', seq, items, first}
