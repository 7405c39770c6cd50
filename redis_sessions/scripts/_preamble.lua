-- The checks the session scripts share, and the one way they append: each function a script calls
-- (and those it calls) is put after the script's header by redis_sessions._scripts when it reads
-- the scripts, and no other (each local function costs a call a closure): one copy, not one per
-- script. Only local functions, each ending with an `end` line of its own. Not a script itself.

-- The session id a session's key carries in its hash tag (rs:{<id>}:meta -> <id>): the dirty
-- indexes and the tenant ledgers name sessions by it. Read from the key the script was given, not
-- passed beside it, so the two can never disagree (ids are UUIDs and prefixes hold no braces: the
-- first {...} is the tag).
local function session_of(key)
  return string.match(key, '{(.-)}')
end

-- List the session of meta in its slot's dirty index (dirty) as dirty since t (a TIME reply), unless
-- it is listed already: the write-behind worker stores it in the record, oldest first.
local function mark_dirty(dirty, meta, t)
  redis.call('ZADD', dirty, 'NX', t[1] * 1000 + math.floor(t[2] / 1000), session_of(meta))
end

-- {1} (NOT_FOUND) when the meta hash has no schema version, {2, version} (VERSION_MISMATCH) when it
-- is not this store's; nil when the session can be used.
local function version_refusal(version, expected)
  if not version then
    return {1}
  end
  if version ~= expected then
    return {2, version}
  end
  return nil
end

-- The meta hash's seq as a number, or nil when it is not a decimal integer: digits only, since
-- tonumber() would also take '1e3', '0x10', 'inf' or ' 2 ', and a write would go on at a wrong seq.
local function decimal_seq(raw)
  return raw and #raw <= 15 and string.find(raw, '^%d+$') and tonumber(raw) or nil
end

-- {6, detail} (CORRUPT): the reply for a seq that decimal_seq refused.
local function corrupt_seq()
  return {6, 'the meta hash holds no decimal integer seq'}
end

-- The seq of a session a script reads, checked: the meta hash's schema_version (version) against
-- the store's (expected) and its seq field (raw) as a decimal integer; or nil and the refusal to
-- return: {1} / {2, version} (version_refusal), {6, detail} (CORRUPT, corrupt_seq). One copy for
-- the scripts that read a session (context, compact, fork_read, pop, read_after, read_since).
local function readable_seq(version, expected, raw)
  local refused = version_refusal(version, expected)
  if refused then
    return nil, refused
  end
  local seq = decimal_seq(raw)
  if not seq then
    return nil, corrupt_seq()
  end
  return seq, nil
end

-- What a script that appends reads first, checked: the meta hash's schema_version, codec, seq,
-- ttl_ms, max_messages, durable, then the fields named in ..., and the seq as a number; or nil, nil
-- and the refusal to return: {1} / {2, version} (version_refusal), {5, codec} (CODEC) when it is not
-- the store's codec, {6, detail} (CORRUPT) for a seq that is not a decimal integer. create.lua
-- writes these fields first, in this order, and then append.lua's: each one asked for is found
-- after as few of the hash's fields as can be (a field it lacks is looked for through them all).
local function writable_meta(meta, version, codec, ...)
  local h = redis.call('HMGET', meta, 'schema_version', 'codec', 'seq', 'ttl_ms', 'max_messages', 'durable', ...)
  local refused = version_refusal(h[1], version)
  if not refused and h[2] ~= codec then
    refused = {5, h[2]}
  end
  local seq = not refused and decimal_seq(h[3])
  if not refused and not seq then
    refused = corrupt_seq()
  end
  if refused then
    return nil, nil, refused
  end
  return h, seq, nil
end


-- Per-tenant counters (the store option tenant_quota; redis_sessions.tenant): the ledger of the
-- session's slot, two keys a store with tenant limits passes after a script's own, nil otherwise
-- (the other stores pay nothing). ledger: a hash, <session id> -> the bytes of its stored bodies,
-- bytes = the ledger's total, allow_sessions / allow_bytes = what this ledger may hold (absent: 0, so
-- the first write asks the store for room; -1: no limit). live: a zset, session id -> a deadline
-- (ms) at or before which the session cannot have expired (+inf: no TTL): a hint that only the
-- tenant.lua sweep acts on, after checking the session's meta hash. A session already stored but
-- not yet counted (made before the store had limits) is counted from its list. The session's
-- record in the ledger, read once per script; nil when there is no ledger.
local function tenant_of(ledger, live, meta, list)
  if not ledger then
    return nil
  end
  local sid = session_of(meta)
  local h = redis.call('HMGET', ledger, sid, 'bytes', 'allow_sessions', 'allow_bytes')
  local t = {ledger = ledger, live = live, sid = sid, counted = h[1] and true or false, bytes = tonumber(h[1]) or 0,
    total = tonumber(h[2]) or 0, allow_s = tonumber(h[3]) or 0, allow_b = tonumber(h[4]) or 0, base = 0}
  if not t.counted and list then
    local bodies = redis.pcall('LRANGE', list, 0, -1)
    if not bodies.err then
      for _, body in ipairs(bodies) do
        t.base = t.base + #body
      end
    end
  end
  return t
end

-- {18, what, usage, add, allowed} (TENANT) when the ledger has no room for this session (when it is
-- not counted yet) or for add more bytes: what is 'sessions' or 'bytes', usage the ledger's count
-- before the call; nil when there is room (or no ledger). Nothing is changed.
local function tenant_room(t, add)
  if not t then
    return nil
  end
  if not t.counted then
    local n = redis.call('ZCARD', t.live)
    if t.allow_s >= 0 and n + 1 > t.allow_s then
      return {18, 'sessions', n, 1, t.allow_s}
    end
    add = add + t.base
  end
  if add > 0 and t.allow_b >= 0 and t.total + add > t.allow_b then
    return {18, 'bytes', t.total, add, t.allow_b}
  end
  return nil
end

-- Record the session in its ledger after a write: its bytes moved by delta (bodies stored minus
-- bodies trimmed or popped), and, when it is new to the ledger, its deadline: now_ms + ttl_ms (a
-- TTL cannot end sooner: later writes only push it back, and a durable session keeps none while
-- dirty), +inf without a TTL. A counted session's deadline stays as it is (still a lower bound):
-- an append pays for no ZADD, and the sweep moves the deadline of a session it finds alive.
local function tenant_record(t, delta, ttl_ms, now_ms)
  if not t then
    return
  end
  local bytes = t.bytes + t.base + delta
  redis.call('HSET', t.ledger, t.sid, bytes)
  redis.call('HINCRBY', t.ledger, 'bytes', bytes - t.bytes)
  if not t.counted then
    redis.call('ZADD', t.live, ttl_ms > 0 and now_ms + ttl_ms or '+inf', t.sid)
  end
  t.counted, t.total, t.bytes, t.base = true, t.total + bytes - t.bytes, bytes, 0
end

-- Move a counted session's bytes by delta (a pop, a re-encryption, a summary's trim: no room needed,
-- the deadline kept as a lower bound); one not counted yet is left to its next append.
local function tenant_shift(t, delta)
  if t and t.counted and delta ~= 0 then
    redis.call('HSET', t.ledger, t.sid, t.bytes + delta)
    redis.call('HINCRBY', t.ledger, 'bytes', delta)
    t.bytes, t.total = t.bytes + delta, t.total + delta
  end
end

-- Take the session out of its ledger (it was deleted or replaced).
local function tenant_forget(t)
  if t and t.counted then
    redis.call('HDEL', t.ledger, t.sid)
    redis.call('HINCRBY', t.ledger, 'bytes', 0 - t.bytes)  -- 0 - x: never '-0', which HINCRBY refuses
    redis.call('ZREM', t.live, t.sid)
    t.counted, t.total, t.bytes = false, t.total - t.bytes, 0
  end
end

-- A session's byte limit and running total, for push_messages: read only for a session that has a
-- limit (max_bytes), so the others pay for one more HMGET field and nothing else. limit > 0; seq is
-- the meta's raw seq. The total is right while the meta's bytes_seq is the seq (a pop, restore or
-- rekey removes bytes_seq: push_messages sums the list again).
local function sized_meta(meta, limit, seq)
  local b = redis.call('HMGET', meta, 'bytes', 'bytes_seq')
  return {limit = limit, total = tonumber(b[1]) or 0, restart = b[2] ~= seq}
end

-- Store the messages args[i] (id), args[i + 1] (encoded) for each index i of fresh (a table; or, for
-- one message, its index, with counted.counts its count rather than a table), after seq: the
-- list and the ids zset, the meta's seq and updated_at, trimming, the TTL (or, for a durable session,
-- the dirty index), and the watchers' notice. keys are the append script's (meta hash, messages
-- list, ids zset, lease hash, events channel, dirty index); h is its HMGET of the meta hash
-- (writable_meta: schema_version, codec, seq, ttl_ms, max_messages, durable). finish, when given, is
-- called as finish(new seq, publish command) after the messages are stored and before the watchers'
-- notice (append.lua closes a streamed reply with it); the new seq is a string there. indexed: the
-- ids zset holds the fresh ids at their seqs already (append.lua's ZADD NX did it), so only the list
-- gets them. counted: the messages' token counts, kept beside them (see context.lua): {key = the
-- tokens list, counts = the count of each of fresh, in its order (a number, or a string of decimal
-- digits: pushed as it is), total = the meta's running total before them, restart = true when the
-- tokens list does not line up with the list (the meta's tokens_seq is not its seq: a session
-- counted since before a restore, say), at = the new seq as a string when the caller formatted it
-- already (one message), and, when the session has a byte limit (max_bytes), sized = {limit, total
-- = the meta's bytes, restart = the meta's bytes_seq is not its seq (a pop, a restore: the total is
-- summed again from the list)}, expiry = the meta's expiry_ms (the deadline every key carries, see
-- the TTL below: read as a number only for a session with a TTL) or nil}. Returns the new seq; or nil and the reply to return: the
-- error when the list or tokens key holds another type, or {17, limit, size} (QUOTA) when the new
-- bodies would take the session past its limit (nothing changed); and with counted.tenant
-- (tenant_of: a store with tenant limits), {18, ...} (TENANT, tenant_room) when the tenant's ledger
-- has no room for them (nothing changed), the ledger kept otherwise.
-- One copy for every script that appends (append.lua, tool_call.lua).
-- Each table, closure, number formatted for a command (sprintf) or string.format costs the server
-- ~0.1-1 us here, as much as a cheap command (measured: benchmarks/bench_append_script.py): the
-- common call (one message, indexed) builds no table and formats two numbers (the new seq, once,
-- and the tokens total).
local function push_messages(keys, args, fresh, h, seq, finish, indexed, counted)
  local meta, list, ids = keys[1], keys[2], keys[3]
  local tokens, total, counts = counted.key, counted.total, counted.counts
  local one, count  -- one message (the common call): its index and count
  if type(fresh) == 'number' then
    one, count = fresh, counts
  elseif #fresh == 1 then
    one, count = fresh[1], counts[1] or 0
  end
  local n = one and 1 or #fresh
  -- The byte limit, checked before anything is stored (only sessions that have one pay for it).
  local sized, refused = counted.sized, nil
  if sized then
    local size = sized.total
    if sized.restart then
      size = 0
      local bodies = redis.pcall('LRANGE', list, 0, -1)
      if not bodies.err then
        for _, body in ipairs(bodies) do
          size = size + #body
        end
      end
    end
    for k = 1, n do
      size = size + #args[(one or fresh[k]) + 1]
    end
    if size > sized.limit then
      refused = {17, sized.limit, size}
    else
      sized.total = size
    end
  end
  -- The tenant's ledger (tenant_quota), checked as the byte limit is: before anything is stored.
  local tenant, added = counted.tenant, 0
  if tenant and not refused then
    for k = 1, n do
      added = added + #args[(one or fresh[k]) + 1]
    end
    refused = tenant_room(tenant, added)
  end
  if refused then  -- nothing is stored: take back append.lua's ZADD NX (at most 500 ids)
    if indexed then
      local taken = {}
      for k = 1, n do
        taken[k] = args[one or fresh[k]]
      end
      redis.call('ZREM', ids, unpack(taken))
    end
    return nil, refused
  end
  local len, tallied
  if n == 1 then
    -- One message (the common call): no table, its count pushed as the caller gave it.
    local i = one
    seq = seq + 1
    if indexed then
      -- The id is indexed already: a list key that is not a list (WRONGTYPE) must not leave it
      -- there, or a failed call would alter the session. Take it back and fail as RPUSH did.
      len = redis.pcall('RPUSH', list, args[i + 1])
    else
      len = redis.call('RPUSH', list, args[i + 1])
      redis.call('ZADD', ids, seq, args[i])
    end
    -- The count, unless the list refused: a tokens key of another type takes the message back.
    local failed = type(len) == 'table' and len.err
    if not failed then
      if counted.restart then
        redis.call('DEL', tokens)
      end
      tallied = redis.pcall('RPUSH', tokens, count)
      failed = type(tallied) == 'table' and tallied.err
      if failed then
        redis.call('LTRIM', list, 0, -2)
      end
    end
    if failed then
      redis.call('ZREM', ids, args[i])
      return nil, redis.error_reply(failed)
    end
    total = total + count
  else
    -- Push in chunks: unpack() of a very large batch would overflow the Lua stack.
    local chunk = 500
    for c = 1, n, chunk do
      local payloads, scored, tallies = {}, nil, {}
      if not indexed then
        scored = {}
      end
      for k = c, math.min(c + chunk - 1, n) do
        local i = fresh[k]
        seq = seq + 1
        payloads[#payloads + 1] = args[i + 1]
        if scored then
          scored[#scored + 1] = seq
          scored[#scored + 1] = args[i]
        end
        local tally = counts[k] or 0
        tallies[#tallies + 1] = tally
        total = total + tally
      end
      if indexed then  -- as for one message (above)
        len = redis.pcall('RPUSH', list, unpack(payloads))
      else
        len = redis.call('RPUSH', list, unpack(payloads))
        redis.call('ZADD', ids, unpack(scored))
      end
      local failed = type(len) == 'table' and len.err
      if not failed then
        if c == 1 and counted.restart then
          redis.call('DEL', tokens)
        end
        tallied = redis.pcall('RPUSH', tokens, unpack(tallies))
        failed = type(tallied) == 'table' and tallied.err
        if failed then
          redis.call('LTRIM', list, 0, -#payloads - 1)
        end
      end
      if failed then  -- only the first chunk can fail: a key's type does not change mid-script
        local taken = {}
        for k = c, math.min(c + chunk - 1, n) do
          taken[#taken + 1] = args[fresh[k]]
        end
        redis.call('ZREM', ids, unpack(taken))
        return nil, redis.error_reply(failed)
      end
    end
  end
  -- The new seq, formatted once for every command that takes it (each number passed to a command is
  -- formatted anew).
  local at = n == 1 and counted.at or tostring(seq)

  local t = redis.call('TIME')

  local durable = h[6] == '1'
  local max = h[5] ~= '0' and tonumber(h[5]) or 0
  if durable and max > 0 and len > max then
    -- Never below the first message not yet stored (synced_seq: read only when it could matter).
    max = math.max(max, seq - (tonumber(redis.call('HGET', meta, 'synced_seq')) or 0))
  end
  if max > 0 and len > max then
    if sized or tenant then  -- the trimmed bodies leave the running byte totals
      for _, body in ipairs(redis.call('LRANGE', list, 0, len - max - 1)) do
        added = added - #body
        if sized then
          sized.total = sized.total - #body
        end
      end
    end
    redis.call('LTRIM', list, -max, -1)
    redis.call('LTRIM', tokens, -max, -1)
    redis.call('ZREMRANGEBYSCORE', ids, '-inf', seq - max)
  end
  -- The TTL. Every key of a session with one carries the deadline its meta keeps in expiry_ms: a
  -- write whose own deadline (now + ttl) is not past it finds every key living long enough and sets
  -- none (a burst of appends sets them once: 4 PEXPIREs are a fifth of this script's server time);
  -- otherwise every key gets now + ttl + a slack of 1 % of the ttl (at most a second). A session so
  -- expires at least ttl after its last write, at most the slack later. A key this call made (its
  -- list or counts were empty, its ids zset holds only this call's ids: say, one evicted) has no
  -- TTL yet: then all are set. Every other script that sets a session's TTL clears expiry_ms (pop,
  -- set_metadata, sync_mark, fork); a durable session keeps none until it is stored (PERSIST).
  local ttl = h[4] ~= '0' and tonumber(h[4]) or 0
  local expiry, kept  -- what the meta's expiry_ms becomes, and what it was (when read)
  if durable then
    mark_dirty(keys[6], meta, t)
    if ttl > 0 then
      redis.call('PERSIST', meta)
      redis.call('PERSIST', list)
      redis.call('PERSIST', ids)
      redis.call('PERSIST', tokens)
      expiry = 0
    end
  elseif ttl > 0 then
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    kept = tonumber(counted.expiry) or 0
    expiry = kept
    if expiry < now + ttl or len == n or tallied == n or redis.call('ZCARD', ids) <= n then
      expiry = now + ttl + math.min(math.floor(ttl / 100), 1000)
      redis.call('PEXPIREAT', meta, expiry)
      redis.call('PEXPIREAT', list, expiry)
      redis.call('PEXPIREAT', ids, expiry)
      redis.call('PEXPIREAT', tokens, expiry)
    end
  end
  -- One HSET of the meta (after the trim, which a byte total needs to know).
  -- updated_at: seconds and zero-padded microseconds (what string.format('%s%06d') gives, for a
  -- third of its cost; string.rep only for the tenth of calls whose microseconds have < 6 digits)
  local us = t[2]
  local stamp = #us == 6 and t[1] .. us or t[1] .. string.rep('0', 6 - #us) .. us
  -- (Spelled out: a table of the fields to unpack costs more than the call.)
  if sized then
    redis.call('HSET', meta, 'seq', at, 'updated_at', stamp, 'tokens', total, 'tokens_seq', at,
      'bytes', sized.total, 'bytes_seq', at, 'expiry_ms', expiry or 0)
  elseif expiry and expiry ~= kept then  -- (an expiry_ms kept as it is is not written again)
    redis.call('HSET', meta, 'seq', at, 'updated_at', stamp, 'tokens', total, 'tokens_seq', at,
      'expiry_ms', expiry)
  else
    redis.call('HSET', meta, 'seq', at, 'updated_at', stamp, 'tokens', total, 'tokens_seq', at)
  end
  if tenant then
    tenant_record(tenant, added, ttl, t[1] * 1000 + math.floor(t[2] / 1000))
  end
  local publish = (redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 'SPUBLISH' or 'PUBLISH'
  if finish then
    finish(at, publish)
  end
  redis.call(publish, keys[5], at)
  return seq
end
