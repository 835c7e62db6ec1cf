-- Save a batch's device records, each fenced by source offsets and versioned (SPEC R34).
-- A record is "~=<version>;<stream>=<offset>;...\n<state>": the first line holds the
-- record's version and the last offset applied from each source partition. It is the field
-- named by its device key in its bucket hash (layout 2, issue 21; sweep_devices.lua reclaims
-- records idle past the expiry, as Redis expired a key of its own before).
-- KEYS: each device's bucket, in order. ARGV, per device in order, two arguments: its device
-- key, then "<version>;<stream>=<offset>;...", a newline and the new record (nothing after
-- the newline: delete it). The first line names the version the record was computed from
-- (0: the device had no record) and the source streams this batch advanced with their
-- offsets (one argument with the record: each argument costs the worker about a microsecond
-- to send).
-- A stored offset at or beyond ours means a newer owner of the partition has written the
-- device since we loaded it (we are a zombie finishing an old batch): that key is left as it
-- is ("refused"). Otherwise a stored version other than ours means another worker changed
-- the device meanwhile (its records come from two partitions): that key is left as it is too,
-- for the caller to apply its events again on the new record ("conflict").
-- Returns {refused count, index of each conflicting key (1-based)}.
local refused = 0
local result = {0}
for k = 1, #KEYS do
  local device = ARGV[2 * k - 1]
  local arg = ARGV[2 * k]
  local newline = string.find(arg, '\n', 1, true)
  local batch = string.sub(arg, 1, newline - 1)
  local record = string.sub(arg, newline + 1)
  local expected = tonumber(string.match(batch, '^(%d+)'))
  local stale = false
  local version = 0
  local stored = redis.call('HGET', KEYS[k], device)
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
    redis.call('HDEL', KEYS[k], device)
  else
    redis.call('HSET', KEYS[k], device, record)
  end
end
result[1] = refused
return result
