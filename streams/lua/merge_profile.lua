-- Merge one batch's updates into a user or group profile (SPEC "State"). Idempotent:
-- traits merge shallowly (later values win), first/last seen are min/max, anonymousIds are
-- a sorted set by last seen, most recent kept.
-- KEYS[1]: traits hash, KEYS[2]: meta hash, KEYS[3]: anonymousIds sorted set.
-- ARGV[1]: first seen ms, ARGV[2]: last seen ms, ARGV[3]: most anonymousIds kept,
-- ARGV[4]: number of anonymousId pairs N, then N pairs (seen ms, anonymousId),
-- then pairs (trait name, JSON value).
local first = tonumber(ARGV[1])
local last = tonumber(ARGV[2])
local stored_first = tonumber(redis.call('HGET', KEYS[2], 'first_seen') or '')
local stored_last = tonumber(redis.call('HGET', KEYS[2], 'last_seen') or '')
if stored_first == nil or first < stored_first then
  redis.call('HSET', KEYS[2], 'first_seen', ARGV[1])
end
if stored_last == nil or last > stored_last then
  redis.call('HSET', KEYS[2], 'last_seen', ARGV[2])
end
local pairs_count = tonumber(ARGV[4])
local at = 5
for _ = 1, pairs_count do
  redis.call('ZADD', KEYS[3], 'GT', ARGV[at], ARGV[at + 1])
  at = at + 2
end
if pairs_count > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[3]) + 1))
end
if at <= #ARGV then
  local traits = {}
  for i = at, #ARGV do
    traits[#traits + 1] = ARGV[i]
  end
  redis.call('HSET', KEYS[1], unpack(traits))
end
return 1
