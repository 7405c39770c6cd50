-- What a listing shows of a session, in one command: ls and stats read every session of a prefix
-- (100,000 and more), and one EVALSHA a session costs less to send and to read than its HMGET,
-- LLEN and PTTL as three. Read-only.
-- KEYS[1] = meta hash, KEYS[2] = messages list
-- Returns {0, {model, seq, schema_version, created_at, updated_at, tokens, summary_seq, parent,
-- fork_seq}, length, pttl}: the meta hash's fields (redis_sessions._admin._FIELDS, in its order; nil
-- where absent: a session deleted since it was listed has no schema_version), the messages list's
-- length and the meta hash's PTTL (-1 no TTL, -2 gone).
-- Status (redis_sessions._protocol.Status): OK
local h = redis.call('HMGET', KEYS[1], 'model', 'seq', 'schema_version', 'created_at', 'updated_at', 'tokens',
  'summary_seq', 'parent', 'fork_seq')
return {0, h, redis.call('LLEN', KEYS[2]), redis.call('PTTL', KEYS[1])}
