-- The checks the session scripts share, put after the header of each script that calls them (by
-- redis_sessions._core when it reads the scripts): one copy, not one per script. Not a script itself.

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

