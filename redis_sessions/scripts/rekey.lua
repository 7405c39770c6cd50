-- Put re-encrypted messages in place of the ones they were made from (redis-sessions migrate --rekey),
-- each only if its list item is still those very bytes: an append, a trim or a pop that moved the list
-- since it was read leaves that item for the next run (so the command is online and resumable).
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3] / KEYS[4] = the tenant ledger hash and live
-- zset of the session's slot (only from a store with tenant limits: the bytes move with the bodies)
-- ARGV[1], ARGV[2], ARGV[3] = a list index, the bytes read there, the re-encrypted bytes; and so on, in threes
-- Returns {0, replaced} with how many were put in place; {1} not found (deleted or expired meanwhile).
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {1}
end
local replaced, delta = 0, 0
for i = 1, #ARGV, 3 do
  local index = tonumber(ARGV[i])
  if redis.call('LINDEX', KEYS[2], index) == ARGV[i + 1] then
    redis.call('LSET', KEYS[2], index, ARGV[i + 2])
    replaced = replaced + 1
    delta = delta + #ARGV[i + 2] - #ARGV[i + 1]
  end
end
if replaced > 0 then  -- new bodies, new sizes: a byte total (max_bytes) is summed again by the next append
  redis.call('HDEL', KEYS[1], 'bytes_seq')
  tenant_shift(tenant_of(KEYS[3], KEYS[4], KEYS[1], nil), delta)
end
return {0, replaced}
