#!lua flags=no-writes,allow-cross-slot-keys
-- Find the sessions listed in dirty indexes whose names are known (one per cluster slot), without
-- scanning the keyspace: the cost of an idle pass is the same at one key or ten million.
-- KEYS[1] ...: none. The index names come in ARGV: a cluster refuses declared keys of several slots
-- in one call, but a script flagged allow-cross-slot-keys (Redis >= 7) may read keys of any slot the
-- node serving the call owns, one slot per command; the caller sends each node its own slots' indexes.
-- ARGV[1] = at most this many sessions in all, ARGV[2] = how many indexes one EXISTS may ask about
-- (256 on one server; 1 on a cluster, where one command may not touch keys of several slots),
-- ARGV[3], ARGV[4], ... = dirty index names
-- Returns {i, member, score, i, member, score, ...}: member (a session id) listed in ARGV[i + 2]
-- since score (ms).
-- Status (redis_sessions._protocol.Status): none (the reply is a flat list of index positions, members and scores)
local out, left, step = {}, tonumber(ARGV[1]), tonumber(ARGV[2])
for c = 3, #ARGV, step do
  local last = math.min(c + step - 1, #ARGV)
  if redis.call('EXISTS', unpack(ARGV, c, last)) > 0 then  -- most chunks are empty: one call each
    for i = c, last do
      if left <= 0 then
        return out
      end
      local entries = redis.call('ZRANGE', ARGV[i], 0, left - 1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        out[#out + 1] = i - 2
        out[#out + 1] = entries[j]
        out[#out + 1] = entries[j + 1]
      end
      left = left - #entries / 2
    end
  end
end
return out
