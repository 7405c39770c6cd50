-- Read what the backing store lacks of a session: its meta hash and the messages after synced_seq.
-- KEYS[1] = meta hash, KEYS[2] = messages list
-- ARGV[1] = schema version, ARGV[2] = at most this many messages
-- Returns {0, meta (flat field/value list), synced seq, items}: items have seqs synced+1, ...;
-- {1} not found; {2, version} other schema; {6, detail} corrupt meta hash;
-- {7, first seq stored} when messages not yet synced were trimmed away (a session made durable late).
local meta, list = KEYS[1], KEYS[2]
local h = redis.call('HGETALL', meta)
if #h == 0 then
  return {1}
end
local f = {}
for i = 1, #h, 2 do
  f[h[i]] = h[i + 1]
end
if f['schema_version'] ~= ARGV[1] then
  return {2, f['schema_version'] or ''}
end
-- Digits only: tonumber() would also take '1e3', '0x10', 'inf' or ' 2 ', and write on at a wrong seq.
local seq = f['seq']
seq = seq and #seq <= 15 and string.find(seq, '^%d+$') and tonumber(seq)
if not seq then
  return {6, 'the meta hash holds no decimal integer seq'}
end
local after = tonumber(f['synced_seq']) or 0
local base = seq - redis.call('LLEN', list)  -- the seq just before the list's head
if after < base then
  return {7, base + 1}
end
local items = {}
if after < seq then
  items = redis.call('LRANGE', list, after - base, after - base + tonumber(ARGV[2]) - 1)
end
return {0, h, after, items}
