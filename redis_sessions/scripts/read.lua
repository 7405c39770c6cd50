-- Read a range of messages (and optionally the meta hash) as one consistent snapshot.
-- KEYS[1] = meta hash, KEYS[2] = messages list
-- ARGV[1] = schema version, ARGV[2] = first index, ARGV[3] = last index (inclusive, LRANGE rules),
-- ARGV[4] = '1' to return the whole meta hash, '0' for its codec only
-- Returns {0, meta, length, items}: meta is the HGETALL array or the codec name;
-- {1} not found; {2, version} other schema.
local meta, list = KEYS[1], KEYS[2]
local version = redis.call('HGET', meta, 'schema_version')
if not version then
  return {1}
end
if version ~= ARGV[1] then
  return {2, version}
end
local head
if ARGV[4] == '1' then
  head = redis.call('HGETALL', meta)
else
  head = redis.call('HGET', meta, 'codec')
end
return {0, head, redis.call('LLEN', list), redis.call('LRANGE', list, ARGV[2], ARGV[3])}
