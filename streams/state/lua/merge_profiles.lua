-- Merge a batch's updates into user or group profiles (SPEC "State"). Idempotent: traits
-- merge shallowly (later values win), first/last seen are min/max, anonymousIds and device
-- keys are sorted sets by last seen, the most recent kept (R35). Returns how many
-- anonymousIds were dropped.
-- KEYS: per profile, its traits hash, meta hash, anonymousIds sorted set and device keys
-- sorted set (R39: the devices a deletion of the user removes).
-- ARGV[1]: most anonymousIds (and device keys) kept; then one argument per profile, in
-- order: the JSON array [first seen ms, last seen ms, [seen ms, anonymousId, ...], [seen ms,
-- device key, ...], [name, JSON value, ...]], every element a string (one argument to send
-- per profile; numbers as strings stay exact).
-- A profile created here with a device lists every device from the start: its meta hash
-- says so ("dx"), and a deletion needs no scan for devices beyond the list (unless it was
-- trimmed). An update of a device already linked today carries no anonymousId nor device:
-- then only last seen (and traits) are written.
local keep = tonumber(ARGV[1])
local trimmed = 0
for p = 1, #KEYS, 4 do
  local traits_key, meta_key, aids_key, devices_key = KEYS[p], KEYS[p + 1], KEYS[p + 2], KEYS[p + 3]
  local merge = cjson.decode(ARGV[2 + (p - 1) / 4])
  local first, last = tonumber(merge[1]), tonumber(merge[2])
  local seen = redis.call('HMGET', meta_key, 'first_seen', 'last_seen')
  local stored_first = tonumber(seen[1] or '')
  local stored_last = tonumber(seen[2] or '')
  if stored_first == nil and #merge[4] > 0
    and redis.call('EXISTS', traits_key, aids_key) == 0 then
    redis.call('HSET', meta_key, 'dx', '1')
  end
  if stored_first == nil or first < stored_first then
    redis.call('HSET', meta_key, 'first_seen', merge[1])
  end
  if stored_last == nil or last > stored_last then
    redis.call('HSET', meta_key, 'last_seen', merge[2])
  end
  for i, set_key in ipairs({aids_key, devices_key}) do
    local pairs_ = merge[2 + i]
    for j = 1, #pairs_, 2 do
      redis.call('ZADD', set_key, 'GT', pairs_[j], pairs_[j + 1])
    end
    if #pairs_ > 0 then
      local dropped = redis.call('ZREMRANGEBYRANK', set_key, 0, -(keep + 1))
      if set_key == aids_key then
        trimmed = trimmed + dropped
      elseif dropped > 0 then
        redis.call('HDEL', meta_key, 'dx')  -- the list no longer names every device
      end
    end
  end
  if #merge[5] > 0 then
    redis.call('HSET', traits_key, unpack(merge[5]))
  end
end
return trimmed
