-- User and group profiles (SPEC "State"): ARGV[1] says what to do, "merge" or "read".
-- A profile is one hash (format 2, keys.py): "t:<name>" JSON trait values, "f" and "l" first
-- and last seen (ms), "a:<anonymousId>" and "d:<device key>" last seen (ms), "x" while it
-- lists every device (R39). One key, not four: a key costs Redis about 100 bytes before any
-- content, and a small hash is one packed list (issue 21).
-- KEYS: per profile, its hash, then its four keys of format 1 (traits hash, meta hash,
-- anonymousIds and devices sorted sets): a profile still in format 1 is read from them, and
-- moved into the hash by its first merge (those keys deleted).
--
-- "read": returns, per profile, its fields and values as one flat list (format 2 names, from
-- either format; empty when there is no such profile). "traits": the same, its "t:" fields
-- only (what R30 reads for every user a batch names: not a user's ids nor devices).
--
-- "merge": a batch's updates merged. Idempotent: traits merge shallowly (later values win),
-- first/last seen are min/max, anonymousIds and device keys are kept by last seen, the most
-- recent kept (R35). Returns how many anonymousIds were dropped.
-- ARGV[2]: most anonymousIds (and device keys) kept; then one argument per profile, in
-- order: the JSON array [first seen ms, last seen ms, [seen ms, anonymousId, ...], [seen ms,
-- device key, ...], [name, JSON value, ...]], every element a string (one argument to send
-- per profile; numbers as strings stay exact).
-- A profile created here with a device lists every device from the start ("x"), and a
-- deletion needs no scan for devices beyond the list (unless it was trimmed). An update of a
-- device already linked today carries no anonymousId nor device: then only last seen (and
-- traits) are written.
local KEYS_PER_PROFILE = 5

local function hset_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end

-- A profile of format 1 as the fields of format 2 (none when it has no keys). The callers
-- check with EXISTS first: most profiles have no such keys.
local function format1_fields(traits_key, meta_key, aids_key, devices_key)
  local fields = {}
  local traits = redis.call('HGETALL', traits_key)
  for i = 1, #traits, 2 do
    fields[#fields + 1] = 't:' .. traits[i]
    fields[#fields + 1] = traits[i + 1]
  end
  local meta = redis.call('HGETALL', meta_key)
  local names = {first_seen = 'f', last_seen = 'l', dx = 'x'}
  for i = 1, #meta, 2 do
    if names[meta[i]] then
      fields[#fields + 1] = names[meta[i]]
      fields[#fields + 1] = meta[i + 1]
    end
  end
  for _, set in ipairs({{aids_key, 'a:'}, {devices_key, 'd:'}}) do
    local members = redis.call('ZRANGE', set[1], 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      fields[#fields + 1] = set[2] .. members[i]
      fields[#fields + 1] = string.format('%.0f', tonumber(members[i + 1]))
    end
  end
  return fields
end

if ARGV[1] == 'read' or ARGV[1] == 'traits' then
  local profiles = {}
  for p = 1, #KEYS, KEYS_PER_PROFILE do
    local fields = redis.call('HGETALL', KEYS[p])
    if #fields == 0
      and redis.call('EXISTS', KEYS[p + 1], KEYS[p + 2], KEYS[p + 3], KEYS[p + 4]) > 0 then
      fields = format1_fields(KEYS[p + 1], KEYS[p + 2], KEYS[p + 3], KEYS[p + 4])
    end
    if ARGV[1] == 'traits' then
      local traits = {}
      for i = 1, #fields, 2 do
        if string.sub(fields[i], 1, 2) == 't:' then
          traits[#traits + 1] = fields[i]
          traits[#traits + 1] = fields[i + 1]
        end
      end
      fields = traits
    end
    profiles[#profiles + 1] = fields
  end
  return profiles
end

local keep = tonumber(ARGV[2])
local trimmed = 0

-- Format 1 -> 2 (called once EXISTS found a key of the profile): the four keys' contents as
-- fields of the hash; false when there were none.
local function upgrade(profile, traits_key, meta_key, aids_key, devices_key)
  local fields = format1_fields(traits_key, meta_key, aids_key, devices_key)
  if #fields == 0 then
    return false
  end
  hset_all(profile, fields)
  redis.call('DEL', traits_key, meta_key, aids_key, devices_key)
  return true
end

-- The most recent `keep` fields named `prefix`..id (ties: the greater id kept, as a sorted
-- set's rank); returns how many were dropped.
local function bound(profile, prefix)
  if redis.call('HLEN', profile) <= keep then
    return 0
  end
  local all = redis.call('HGETALL', profile)
  local entries = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == prefix then
      entries[#entries + 1] = {tonumber(all[i + 1]), all[i]}
    end
  end
  if #entries <= keep then
    return 0
  end
  table.sort(entries, function(x, y)
    if x[1] ~= y[1] then
      return x[1] < y[1]
    end
    return x[2] < y[2]
  end)
  local drop = {}
  for i = 1, #entries - keep do
    drop[i] = entries[i][2]
  end
  for i = 1, #drop, 1000 do
    redis.call('HDEL', profile, unpack(drop, i, math.min(i + 999, #drop)))
  end
  return #drop
end

for p = 1, #KEYS, KEYS_PER_PROFILE do
  local profile = KEYS[p]
  local merge = cjson.decode(ARGV[3 + (p - 1) / KEYS_PER_PROFILE])
  local first, last = tonumber(merge[1]), tonumber(merge[2])
  local seen = redis.call('HMGET', profile, 'f', 'l')
  local new = false  -- no such profile, in either format
  if not seen[1] then
    if redis.call('EXISTS', profile, KEYS[p + 1], KEYS[p + 2], KEYS[p + 3], KEYS[p + 4]) == 0 then
      new = true
    elseif upgrade(profile, KEYS[p + 1], KEYS[p + 2], KEYS[p + 3], KEYS[p + 4]) then
      seen = redis.call('HMGET', profile, 'f', 'l')
    end
  end
  local stored_first = tonumber(seen[1] or '')
  local stored_last = tonumber(seen[2] or '')
  local fields = {}
  if new and #merge[4] > 0 then
    fields[#fields + 1] = 'x'
    fields[#fields + 1] = '1'
  end
  if stored_first == nil or first < stored_first then
    fields[#fields + 1] = 'f'
    fields[#fields + 1] = merge[1]
  end
  if stored_last == nil or last > stored_last then
    fields[#fields + 1] = 'l'
    fields[#fields + 1] = merge[2]
  end
  for i, prefix in ipairs({'a:', 'd:'}) do
    local pairs_ = merge[2 + i]
    for j = 1, #pairs_, 2 do
      local name = prefix .. pairs_[j + 1]
      local stored = tonumber(redis.call('HGET', profile, name) or '')
      if stored == nil or tonumber(pairs_[j]) > stored then
        fields[#fields + 1] = name
        fields[#fields + 1] = pairs_[j]
      end
    end
  end
  local traits = merge[5]
  for i = 1, #traits, 2 do
    fields[#fields + 1] = 't:' .. traits[i]
    fields[#fields + 1] = traits[i + 1]
  end
  if #fields > 0 then
    hset_all(profile, fields)
  end
  if #merge[3] > 0 then
    trimmed = trimmed + bound(profile, 'a:')
  end
  if #merge[4] > 0 and bound(profile, 'd:') > 0 then
    redis.call('HDEL', profile, 'x')  -- the list no longer names every device
  end
end
return trimmed
