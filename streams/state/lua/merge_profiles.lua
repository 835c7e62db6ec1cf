-- Merge a batch's updates into user or group profiles (SPEC "State"). Idempotent: traits
-- merge shallowly (later values win), first/last seen are min/max, anonymousIds are a sorted
-- set by last seen, the most recent kept (R35). Returns how many anonymousIds were dropped.
-- KEYS: per profile, its traits hash, meta hash and anonymousIds sorted set.
-- ARGV[1]: most anonymousIds kept; then, per profile in order: first seen ms, last seen ms,
-- the number A of anonymousIds and A pairs (seen ms, anonymousId), the number T of traits
-- and T pairs (name, JSON value).
local keep = tonumber(ARGV[1])
local at = 2
local trimmed = 0
for p = 1, #KEYS, 3 do
  local traits_key, meta_key, aids_key = KEYS[p], KEYS[p + 1], KEYS[p + 2]
  local first, last = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local stored_first = tonumber(redis.call('HGET', meta_key, 'first_seen') or '')
  local stored_last = tonumber(redis.call('HGET', meta_key, 'last_seen') or '')
  if stored_first == nil or first < stored_first then
    redis.call('HSET', meta_key, 'first_seen', ARGV[at])
  end
  if stored_last == nil or last > stored_last then
    redis.call('HSET', meta_key, 'last_seen', ARGV[at + 1])
  end
  local aids = tonumber(ARGV[at + 2])
  at = at + 3
  for _ = 1, aids do
    redis.call('ZADD', aids_key, 'GT', ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  if aids > 0 then
    trimmed = trimmed + redis.call('ZREMRANGEBYRANK', aids_key, 0, -(keep + 1))
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
