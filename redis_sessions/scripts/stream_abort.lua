-- Close streamed replies as aborted: one by its id (ReplyStream.abort), or every open reply whose
-- producer is gone (a partial watcher's reap): its lease's token is no longer the reply's fencing
-- token, or, unfenced, it wrote nothing for its idle time.
-- KEYS[1] = meta hash, KEYS[2] = reply stream, KEYS[3] = replies hash, KEYS[4] = lease hash,
-- KEYS[5] = deltas channel
-- ARGV[1] = message id ('' = reap), ARGV[2] = reason, ARGV[3] = ms to keep the stream after an abort
-- An abort adds {m = id, a = reason, s = the session's seq} to the stream and sets <id>:st = 'a'.
-- Aborting a reply that is not open (never written, finished, aborted) changes nothing.
-- Returns {0, n}: n replies aborted.
-- Status (redis_sessions._protocol.Status): OK
local meta, stream, replies = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local victims = {}
if ARGV[1] ~= '' then
  if redis.call('HGET', replies, ARGV[1] .. ':st') == 'o' then
    victims[1] = ARGV[1]
  end
else
  local live = redis.call('HGET', KEYS[4], 'token') or ''
  local fields = redis.call('HGETALL', replies)
  for i = 1, #fields, 2 do
    local id = string.match(fields[i], '^(.*):st$')
    if id and fields[i + 1] == 'o' then
      local h = redis.call('HMGET', replies, id .. ':f', id .. ':t', id .. ':i')
      local fence = h[1] or ''
      if (fence ~= '' and fence ~= live) or (fence == '' and now - (tonumber(h[2]) or 0) > (tonumber(h[3]) or 0)) then
        victims[#victims + 1] = id
      end
    end
  end
end
if #victims == 0 then
  return {0, 0}
end
local seq = redis.call('HGET', meta, 'seq') or '0'
for _, id in ipairs(victims) do
  redis.call('XADD', stream, '*', 'm', id, 'a', ARGV[2], 's', seq)
  redis.call('HSET', replies, id .. ':st', 'a', id .. ':s', seq)
  redis.call('HINCRBY', replies, 'open', -1)
end
redis.call('PEXPIRE', stream, ARGV[3])
redis.call('PEXPIRE', replies, ARGV[3])
redis.call((redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH', KEYS[5], 'a')
return {0, #victims}
