-- Share the dirty indexes between write-behind workers: the 16384 slots in 64 groups of 256, each
-- group leased to one worker at a time for a short while, each live worker taking a fair share.
-- Leases only spread the work: delivery is idempotent and a record refuses gaps, so a worker that
-- outlives its lease (paused, partitioned) delivers nothing wrong, only something twice.
-- KEYS[1] = the workers zset (token -> lease end, ms), KEYS[2..65] = the leases of groups 0..63
-- (every key under one hash tag: one slot)
-- ARGV[1] = this worker's token, ARGV[2] = lease time in ms, ARGV[3] = '1' to give everything up
-- Returns the groups (0-based) this worker holds now.
-- Status (redis_sessions._protocol.Status): none (the reply is the list of groups held)
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local token, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held, free = {}, {}
for g = 0, #KEYS - 2 do
  local owner = redis.call('GET', KEYS[g + 2])
  if owner == token then
    held[#held + 1] = g
  elseif not owner then
    free[#free + 1] = g
  end
end
if ARGV[3] == '1' then
  for _, g in ipairs(held) do
    redis.call('DEL', KEYS[g + 2])
  end
  redis.call('ZREM', KEYS[1], token)
  return {}
end
redis.call('ZADD', KEYS[1], now + ttl, token)
local workers = redis.call('ZCARD', KEYS[1])
local share = math.ceil((#KEYS - 1) / workers)
while #held > share do  -- more workers now: hand some back
  redis.call('DEL', KEYS[table.remove(held) + 2])
end
-- Take free groups, starting at a place that depends on the token, so workers do not all reach
-- for the same groups first.
local start = #free > 0 and (tonumber(string.sub(token, 1, 6), 16) or 0) % #free or 0
for k = 0, #free - 1 do
  if #held >= share then
    break
  end
  held[#held + 1] = free[(start + k) % #free + 1]
end
for _, g in ipairs(held) do
  redis.call('SET', KEYS[g + 2], token, 'PX', ttl)
end
return held
