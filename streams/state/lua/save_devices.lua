-- Save a batch's device records, each fenced by source offsets and versioned (SPEC R34).
-- A record is "~=<version>;<stream>=<offset>;...\n<state JSON>": the first line holds the
-- record's version and the last offset applied from each source partition.
-- KEYS: the device keys. ARGV[1]: expiry in ms (0: none); then, per key in order, one
-- argument: "<version>;<stream>=<offset>;...", a newline and the new record (nothing after
-- the newline: delete it). The first line names the version the record was computed from
-- (0: the device had no record) and the source streams this batch advanced with their
-- offsets (one argument per device: each argument costs the worker about a microsecond to
-- send).
-- A stored offset at or beyond ours means a newer owner of the partition has written the
-- device since we loaded it (we are a zombie finishing an old batch): that key is left as it
-- is ("refused"). Otherwise a stored version other than ours means another worker changed
-- the device meanwhile (its records come from two partitions): that key is left as it is too,
-- for the caller to apply its events again on the new record ("conflict").
-- Returns {refused count, index of each conflicting key (1-based)}.
local ttl = tonumber(ARGV[1])
local refused = 0
local result = {0}
for k = 1, #KEYS do
  local arg = ARGV[k + 1]
  local newline = string.find(arg, '\n', 1, true)
  local batch = string.sub(arg, 1, newline - 1)
  local record = string.sub(arg, newline + 1)
  local expected = tonumber(string.match(batch, '^(%d+)'))
  local stale = false
  local version = 0
  local stored = redis.call('GET', KEYS[k])
  if stored then
    local head = string.sub(stored, 1, (string.find(stored, '\n', 1, true) or 1) - 1)
    local fence = {}
    for name, value in string.gmatch(head, '([^;=]+)=(%d+)') do
      if name == '~' then
        version = tonumber(value)
      else
        fence[name] = tonumber(value)
      end
    end
    for stream, offset in string.gmatch(batch, ';([^;=]+)=(%d+)') do
      local applied = fence[stream]
      if applied ~= nil and applied >= tonumber(offset) then
        stale = true
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
end
result[1] = refused
return result
