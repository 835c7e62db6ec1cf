-- Save a batch's device records, each fenced by source offsets and versioned (SPEC R34).
-- A record is "~=<version>;<stream>=<offset>;...\n<state JSON>": the first line holds the
-- record's version and the last offset applied from each source partition.
-- KEYS: the device keys. ARGV[1]: expiry in ms (0: none); then, per key in order: the new
-- record ("" to delete it), the version it was computed from (0: the device had no record), the number N of
-- source streams this batch advanced, and N pairs (stream, offset).
-- A stored offset at or beyond ours means a newer owner of the partition has written the
-- device since we loaded it (we are a zombie finishing an old batch): that key is left as it
-- is ("refused"). Otherwise a stored version other than ours means another worker changed
-- the device meanwhile (its records come from two partitions): that key is left as it is too,
-- for the caller to apply its events again on the new record ("conflict").
-- Returns {refused count, index of each conflicting key (1-based)}.
local ttl = tonumber(ARGV[1])
local at = 2
local refused = 0
local result = {0}
for k = 1, #KEYS do
  local record = ARGV[at]
  local expected = tonumber(ARGV[at + 1])
  local count = tonumber(ARGV[at + 2])
  local stale = false
  local version = 0
  local stored = redis.call('GET', KEYS[k])
  if stored then
    local head = string.sub(stored, 1, (string.find(stored, '\n', 1, true) or 1) - 1)
    for name, value in string.gmatch(head, '([^;=]+)=(%d+)') do
      if name == '~' then
        version = tonumber(value)
      end
    end
    for i = 1, count do
      local stream = ARGV[at + 1 + 2 * i]
      local offset = tonumber(ARGV[at + 2 + 2 * i])
      for name, value in string.gmatch(head, '([^;=]+)=(%d+)') do
        if name == stream and tonumber(value) >= offset then
          stale = true
        end
      end
    end
  end
  if stale then
    refused = refused + 1
  elseif version ~= expected then
    result[#result + 1] = k
  elseif record == '' then
    redis.call('DEL', KEYS[k])
  elseif ttl > 0 then
    redis.call('SET', KEYS[k], record, 'PX', ttl)
  else
    redis.call('SET', KEYS[k], record)
  end
  at = at + 3 + 2 * count
end
result[1] = refused
return result
