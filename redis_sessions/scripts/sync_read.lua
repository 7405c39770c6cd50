#!lua flags=allow-oom
-- Read what the backing record lacks of some sessions (one slot's, or one dirty shard's): each one's
-- meta hash and the messages after what the record holds. One call serves a whole batch of sessions.
-- KEYS[1] .. KEYS[4] = meta hash, messages list, dirty index and tokens list of the first session,
-- KEYS[4i-3] .. KEYS[4i] of the i-th (on a cluster all in one slot)
-- ARGV[1] = schema version, ARGV[2] = at most this many messages per session,
-- ARGV[3] = the worker's record id, ARGV[3+i] = read after this seq ('' = the session's synced_seq;
-- a seq when the record reported holding less than synced_seq: a gap to fill again)
-- Returns one reply per session: {0, meta, after, items, counts}: meta is the hash as a flat field/value
-- list less the bookkeeping fields in UNREAD (the reader parses none of them: a third of a usual hash,
-- sent and parsed for nothing); items have seqs after+1, ...; counts are the token counts of the last #counts items (the tokens list's tail
-- lines up with the messages list's while the meta's tokens_seq is its seq, as context.lua reads it;
-- items older than the counting have none); {1} not found (taken off the dirty index here, in the same atomic step: a worker
-- that did it in a call of its own could unlist the session read back and written meanwhile);
-- {2, version} other schema; {6, detail} corrupt meta hash;
-- {7, first seq stored} when messages not yet in the record were trimmed away;
-- {13, record id} the session is bound to another record (this worker must not deliver it).
-- A durable session not yet bound (written before records had ids) is bound to the reader's record;
-- allow-oom (Redis >= 7) because delivering is what makes a full Redis evictable again.
-- Status (redis_sessions._protocol.Status): OK NOT_FOUND VERSION_MISMATCH CORRUPT TRIMMED OTHER_RECORD
local UNREAD = {schema_version = true, create_token = true, tokens_seq = true, tokens = true,
  durable = true, record = true, synced_seq = true}
local replies = {}
for i = 1, #KEYS / 4 do
  local meta, list, index, tokens = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local reply
  local h = redis.call('HGETALL', meta)
  local f, sent = {}, {}
  for j = 1, #h, 2 do
    f[h[j]] = h[j + 1]
    if not UNREAD[h[j]] then
      sent[#sent + 1] = h[j]
      sent[#sent + 1] = h[j + 1]
    end
  end
  -- Digits only: tonumber() would also take '1e3', '0x10', 'inf' or ' 2 ', and write on at a wrong seq.
  local seq = f['seq']
  seq = seq and #seq <= 15 and string.find(seq, '^%d+$') and tonumber(seq)
  if #h == 0 then
    redis.call('ZREM', index, session_of(meta))
    reply = {1}
  elseif f['schema_version'] ~= ARGV[1] then
    reply = {2, f['schema_version'] or ''}
  elseif not seq then
    reply = {6, 'the meta hash holds no decimal integer seq'}
  elseif f['record'] and f['record'] ~= ARGV[3] then
    reply = {13, f['record']}
  else
    if not f['record'] then
      redis.call('HSET', meta, 'record', ARGV[3])
    end
    local after = tonumber(ARGV[3 + i]) or tonumber(f['synced_seq']) or 0
    local length = redis.call('LLEN', list)
    local base = seq - length  -- the seq just before the list's head
    if after < base then
      reply = {7, base + 1}
    else
      local items, counts = {}, {}
      if after < seq then
        local lo = after - base
        items = redis.call('LRANGE', list, lo, lo + tonumber(ARGV[2]) - 1)
        if f['tokens_seq'] == f['seq'] then
          local offset = length - redis.call('LLEN', tokens)  -- the list position of its head
          local hi = lo + #items - 1
          if hi >= offset then
            counts = redis.call('LRANGE', tokens, math.max(lo, offset) - offset, hi - offset)
          end
        end
      end
      reply = {0, sent, after, items, counts}
    end
  end
  replies[i] = reply
end
return replies
