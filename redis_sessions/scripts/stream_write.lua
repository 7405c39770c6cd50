-- Store deltas of a streamed reply (store.stream(...).write): idempotent by index, fenced, bounded.
-- KEYS[1] = meta hash, KEYS[2] = reply stream, KEYS[3] = replies hash, KEYS[4] = lease hash,
-- KEYS[5] = deltas channel (sharded on Redis >= 7; partial watchers listen there)
-- ARGV[1] = schema version, ARGV[2] = message id, ARGV[3] = fencing token ('' = none),
-- ARGV[4] = index of the first delta given, ARGV[5] = max deltas, ARGV[6] = max bytes,
-- ARGV[7] = ms to keep the stream after this write, ARGV[8] = idle ms after which a reader may
-- give an unfenced reply up, ARGV[9..] = the deltas' texts.
-- Deltas whose index is already stored (a retry after a lost reply) are skipped. A reply's state
-- in the replies hash: <id>:st 'o' open, 'f' finished, 'a' aborted; :n deltas, :b bytes,
-- :t last write (ms), :f fencing token, :i idle ms, :o the session's seq when it opened, :s when
-- it closed.
-- Returns {0, n}: n deltas stored; {9, token} the fencing token is not the live lease's;
-- {14, state} the reply is closed; {15, 'deltas' | 'bytes', limit} over a bound (nothing stored);
-- {3, n} the first index is past the n deltas stored (a gap); {1} not found; {2, version} other schema.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CONFLICT LEASE_LOST REPLY_CLOSED REPLY_FULL
local meta, stream, replies = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', meta, 'schema_version', 'seq')
local refused = version_refusal(h[1], ARGV[1])
if refused then
  return refused
end
local id, fence = ARGV[2], ARGV[3]
local state = redis.call('HMGET', replies, id .. ':st', id .. ':n', id .. ':b')
if state[1] == 'f' then
  return {14, 'finished'}
elseif state[1] == 'a' then
  return {14, 'aborted'}
end
local n, bytes = tonumber(state[2]) or 0, tonumber(state[3]) or 0
local first = tonumber(ARGV[4])
if first > n then
  if not state[1] and first > 0 then
    return {14, 'expired'}
  end
  return {3, n}
end
if fence ~= '' then
  local live = redis.call('HGET', KEYS[4], 'token')
  if live ~= fence then
    return {9, live or ''}
  end
end
local skip = n - first  -- deltas of this call already stored
local count, size = #ARGV - 8 - skip, 0
if count <= 0 then
  return {0, n}
end
for i = 9 + skip, #ARGV do
  size = size + #ARGV[i]
end
if n + count > tonumber(ARGV[5]) then
  return {15, 'deltas', ARGV[5]}
end
if bytes + size > tonumber(ARGV[6]) then
  return {15, 'bytes', ARGV[6]}
end
for i = 9 + skip, #ARGV do
  redis.call('XADD', stream, '*', 'm', id, 'i', n, 'x', ARGV[i])
  n = n + 1
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if not state[1] then
  redis.call('HINCRBY', replies, 'open', 1)
  redis.call('HSET', replies, id .. ':o', h[2] or '0')
end
redis.call('HSET', replies, id .. ':st', 'o', id .. ':n', n, id .. ':b', bytes + size, id .. ':t', now,
  id .. ':f', fence, id .. ':i', ARGV[8])
redis.call('PEXPIRE', stream, ARGV[7])
redis.call('PEXPIRE', replies, ARGV[7])
redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[5], n)
return {0, n}
