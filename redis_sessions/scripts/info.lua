-- What a listing shows of a page of sessions, in one command: ls and stats read every session of a
-- prefix (100,000 and more). One call for a page costs the server less than one a session (the
-- script's call overhead, ~5 us, was more than its reads), and the client reads one flat reply.
-- Read-only. On a cluster the caller sends one session a call (the keys of a call share a slot).
-- KEYS[1] = the first session's meta hash, KEYS[2] = its messages list, KEYS[3..] = with ARGV[1] = '1'
-- its ids zset and tokens list (counted too: stats); then the next session's keys the same way, and so
-- on (2 keys a session, 4 with ARGV[1] = '1')
-- ARGV[1] = '1' to add the bytes the keys take (the sum of MEMORY USAGE of the session's keys), '' not to,
-- 'row' for only what a row of `ls` shows (2 keys a session)
-- Returns {0, then for each session, flat: model, seq, schema_version, created_at, updated_at, tokens,
-- summary_seq, parent, fork_seq, length, pttl and, with ARGV[1] = '1', bytes (-1: the server has no
-- MEMORY command, as fakeredis and some managed servers)}: the meta hash's fields
-- (redis_sessions._admin._FIELDS, in its order; nil where absent: a session deleted since it was
-- listed has no schema_version), the messages list's length and the meta hash's PTTL (-1 no TTL,
-- -2 gone). With ARGV[1] = 'row', for each session only model, seq, schema_version, created_at,
-- updated_at, length, pttl (redis_sessions._ls_rows): HMGET looks each field up in turn along the
-- meta's listpack (the absent parent, fork_seq... along all of it), and ls need not pay for them.
-- Status (redis_sessions._protocol.Status): OK
local reply, n = {0}, 0
if ARGV[1] == 'row' then
  for i = 1, #KEYS, 2 do
    local h = redis.call('HMGET', KEYS[i], 'model', 'seq', 'schema_version', 'created_at', 'updated_at')
    reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5], reply[n + 6] = h[1], h[2], h[3], h[4], h[5]
    reply[n + 7] = redis.call('LLEN', KEYS[i + 1])
    reply[n + 8] = redis.call('PTTL', KEYS[i])
    n = n + 7
  end
  return reply
end
local memory = ARGV[1] == '1'
local step = memory and 4 or 2
n = 1
for i = 1, #KEYS, step do
  local h = redis.call('HMGET', KEYS[i], 'model', 'seq', 'schema_version', 'created_at', 'updated_at',
    'tokens', 'summary_seq', 'parent', 'fork_seq')
  for j = 1, 9 do
    reply[n + j] = h[j]
  end
  reply[n + 10] = redis.call('LLEN', KEYS[i + 1])
  reply[n + 11] = redis.call('PTTL', KEYS[i])
  n = n + 11
  if memory then  -- one command a page for stats, not its reads plus a MEMORY USAGE a key
    local bytes = 0
    for k = i, i + 3 do
      local used = redis.pcall('MEMORY', 'USAGE', KEYS[k])
      if type(used) == 'table' then
        bytes = -1
        break
      end
      bytes = bytes + (used or 0)
    end
    n = n + 1
    reply[n] = bytes
  end
end
return reply
