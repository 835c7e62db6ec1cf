-- Merge a batch's updates into user or group profiles (SPEC "State"). Idempotent: traits
-- merge shallowly (later values win), first/last seen are min/max, anonymousIds and device
-- keys are sorted sets by last seen, the most recent kept (R35). Returns how many
-- anonymousIds were dropped.
-- KEYS: per profile, its traits hash, meta hash, anonymousIds sorted set and device keys
-- sorted set (R39: the devices a deletion of the user removes).
-- ARGV[1]: most anonymousIds (and device keys) kept; then, per profile in order: first seen
-- ms, last seen ms, the number A of anonymousIds and A pairs (seen ms, anonymousId), the
-- number D of device keys and D pairs (seen ms, device key), the number T of traits and T
-- pairs (name, JSON value).
-- A profile created here with a device lists every device from the start: its meta hash
-- says so ("dx"), and a deletion needs no scan for devices beyond the list (unless it was
-- trimmed). An update of a device already linked today carries no anonymousId nor device:
-- then only last seen (and traits) are written.
local keep = tonumber(ARGV[1])
local at = 2
local trimmed = 0
for p = 1, #KEYS, 4 do
  local traits_key, meta_key, aids_key, devices_key = KEYS[p], KEYS[p + 1], KEYS[p + 2], KEYS[p + 3]
  local first, last = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local seen = redis.call('HMGET', meta_key, 'first_seen', 'last_seen')
  local stored_first = tonumber(seen[1] or '')
  local stored_last = tonumber(seen[2] or '')
  local aids_count = tonumber(ARGV[at + 2])
  local devices_count = tonumber(ARGV[at + 3 + 2 * aids_count])
  if stored_first == nil and devices_count > 0
    and redis.call('EXISTS', traits_key, aids_key) == 0 then
    redis.call('HSET', meta_key, 'dx', '1')
  end
  if stored_first == nil or first < stored_first then
    redis.call('HSET', meta_key, 'first_seen', ARGV[at])
  end
  if stored_last == nil or last > stored_last then
    redis.call('HSET', meta_key, 'last_seen', ARGV[at + 1])
  end
  at = at + 2
  for _, set_key in ipairs({aids_key, devices_key}) do
    local count = tonumber(ARGV[at])
    at = at + 1
    for _ = 1, count do
      redis.call('ZADD', set_key, 'GT', ARGV[at], ARGV[at + 1])
      at = at + 2
    end
    if count > 0 then
      local dropped = redis.call('ZREMRANGEBYRANK', set_key, 0, -(keep + 1))
      if set_key == aids_key then
        trimmed = trimmed + dropped
      elseif dropped > 0 then
        redis.call('HDEL', meta_key, 'dx')  -- the list no longer names every device
      end
    end
  end
  local traits = tonumber(ARGV[at])
  at = at + 1
  if traits > 0 then
    local fields = {}
    for i = at, at + 2 * traits - 1 do
      fields[#fields + 1] = ARGV[i]
    end
    redis.call('HSET', traits_key, unpack(fields))
    at = at + 2 * traits
  end
end
return trimmed
