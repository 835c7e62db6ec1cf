-- Save one device record, fenced by source offsets (SPEC R34).
-- KEYS[1]: the device hash. ARGV[1]: expiry in ms (0: none), ARGV[2]: the state JSON,
-- then pairs of (source stream, last offset applied from it in this batch).
-- A stored offset at or beyond ours means a newer owner of the partition has written the
-- device since we loaded it (we are a zombie finishing an old batch): write nothing.
for i = 3, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], 'o:' .. ARGV[i])
  if stored and tonumber(stored) >= tonumber(ARGV[i + 1]) then
    return 0
  end
end
local fields = {'s', ARGV[2]}
for i = 3, #ARGV, 2 do
  fields[#fields + 1] = 'o:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
