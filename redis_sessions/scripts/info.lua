-- What a listing shows of a session, in one command: ls and stats read every session of a prefix
-- (100,000 and more), and one EVALSHA a session costs less to send and to read than its HMGET,
-- LLEN and PTTL as three (and, for stats, than a MEMORY USAGE of each key more). Read-only.
-- KEYS[1] = meta hash, KEYS[2] = messages list, KEYS[3..] = (with ARGV[1] = '1') the session's other
-- keys whose memory is counted too (ids zset, tokens list: stats)
-- ARGV[1] = '1' to add the bytes the keys take (the sum of MEMORY USAGE of every KEYS), '' not to
-- Returns {0, {model, seq, schema_version, created_at, updated_at, tokens, summary_seq, parent,
-- fork_seq}, length, pttl} and, with ARGV[1] = '1', bytes (-1: the server has no MEMORY command,
-- as fakeredis and some managed servers): the meta hash's fields (redis_sessions._admin._FIELDS, in
-- its order; nil where absent: a session deleted since it was listed has no schema_version), the
-- messages list's length and the meta hash's PTTL (-1 no TTL, -2 gone).
-- Status (redis_sessions._protocol.Status): OK
local h = redis.call('HMGET', KEYS[1], 'model', 'seq', 'schema_version', 'created_at', 'updated_at', 'tokens',
  'summary_seq', 'parent', 'fork_seq')
local reply = {0, h, redis.call('LLEN', KEYS[2]), redis.call('PTTL', KEYS[1])}
if ARGV[1] == '1' then  -- one command a session for stats, not its reads plus a MEMORY USAGE a key
  local bytes = 0
  for i = 1, #KEYS do
    local n = redis.pcall('MEMORY', 'USAGE', KEYS[i])
    if type(n) == 'table' then
      bytes = -1
      break
    end
    bytes = bytes + (n or 0)
  end
  reply[5] = bytes
end
return reply
