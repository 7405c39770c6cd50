-- Turn leases with fencing tokens: acquire, renew, release.
-- KEYS[1] = meta hash, KEYS[2] = lease hash (owner, token; expires with the lease)
-- ARGV[1] = schema version, ARGV[2] = 'acquire' | 'renew' | 'release', ARGV[3] = owner,
-- ARGV[4] = token ('' on acquire), ARGV[5] = ttl in ms
-- acquire: {0, token} with a token greater than every token granted before for this session
--          (the meta hash's fence counter); {8, holder} when another owner holds a live lease.
-- renew / release: {0, token}; {9, ''} when the lease expired or another holder took over.
-- {1} not found; {2, version} other schema.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH LEASE_HELD LEASE_LOST
local meta, lease = KEYS[1], KEYS[2]
local refused = version_refusal(redis.call('HGET', meta, 'schema_version'), ARGV[1])
if refused then
  return refused
end
local held = redis.call('HMGET', lease, 'owner', 'token')
local action, owner = ARGV[2], ARGV[3]
if action == 'acquire' then
  if held[1] and held[1] ~= owner then
    return {8, held[1]}
  end
  local token = redis.call('HINCRBY', meta, 'fence', 1)
  redis.call('HSET', lease, 'owner', owner, 'token', token)
  redis.call('PEXPIRE', lease, ARGV[5])
  return {0, token}
end
if held[2] ~= ARGV[4] or held[1] ~= owner then
  return {9, ''}
end
if action == 'renew' then
  redis.call('PEXPIRE', lease, ARGV[5])
else
  redis.call('DEL', lease)
end
return {0, tonumber(ARGV[4])}
