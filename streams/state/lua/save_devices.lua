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
-- Written with plain finds and anchored matches, not a pattern loop over each head, nor a copy
-- of each line: the script took Redis about 9 µs a device, 5 to 7 of them in Lua's own string
-- work (issue 21: one Redis serves every worker's saves).
local find, sub, match, gmatch = string.find, string.sub, string.match, string.gmatch
local refused = 0
local result = {0}
for k = 1, #KEYS do
  local device = ARGV[2 * k - 1]
  local arg = ARGV[2 * k]
  local newline = find(arg, '\n', 1, true)
  local expected = tonumber(match(arg, '^%d+'))
  local stale = false
  local version = 0
  local stored = redis.call('HGET', KEYS[k], device)
  if stored then
    local head_end = find(stored, '\n', 1, true) or (#stored + 1)
    if sub(stored, 1, 2) == '~=' then  -- every head encode_device writes
      version = tonumber(match(stored, '^%d+', 3))
      -- each ";<stream>=<offset>" of ours against the same stream's in the stored head
      local at = find(arg, ';', 1, true)
      while at ~= nil and at < newline and not stale do
        local equals = find(arg, '=', at, true)
        local stream = sub(arg, at, equals)  -- ";<stream>=": delimited on both sides
        local found = find(stored, stream, 1, true)
        if found ~= nil and found < head_end
          and tonumber(match(stored, '^%d+', found + #stream))
            >= tonumber(match(arg, '^%d+', equals + 1)) then
          stale = true
        end
        at = find(arg, ';', equals, true)
      end
    else  -- a head of another shape (the version not first): read every field of it
      local fence = {}
      for name, value in gmatch(sub(stored, 1, head_end - 1), '([^;=]+)=(%d+)') do
        if name == '~' then
          version = tonumber(value)
        else
          fence[name] = tonumber(value)
        end
      end
      for stream, offset in gmatch(sub(arg, 1, newline - 1), ';([^;=]+)=(%d+)') do
        local applied = fence[stream]
        if applied ~= nil and applied >= tonumber(offset) then
          stale = true
        end
      end
    end
  end
  if stale then
    refused = refused + 1
  elseif version ~= expected then
    result[#result + 1] = k
  elseif newline == #arg then
    redis.call('HDEL', KEYS[k], device)
  else
    redis.call('HSET', KEYS[k], device, sub(arg, newline + 1))
  end
end
result[1] = refused
return result
