-- Save a batch's device records, each fenced by source offsets (SPEC R34).
-- A record is "<stream>=<offset>;...\n<state JSON>": the first line holds the last offset
-- applied from each source partition.
-- KEYS: the device keys. ARGV[1]: expiry in ms (0: none); then, per key in order: the new
-- record, the number N of source streams this batch advanced, and N pairs (stream, offset).
-- A stored offset at or beyond ours means a newer owner of the partition has written the
-- device since we loaded it (we are a zombie finishing an old batch): that key is left as it
-- is. Returns how many keys were left.
local ttl = tonumber(ARGV[1])
local at = 2
local refused = 0
for k = 1, #KEYS do
  local record = ARGV[at]
  local count = tonumber(ARGV[at + 1])
  local stale = false
  local stored = redis.call('GET', KEYS[k])
  if stored then
    local head = string.sub(stored, 1, (string.find(stored, '\n', 1, true) or 1) - 1)
    for i = 1, count do
      local stream = ARGV[at + 2 * i]
      local offset = tonumber(ARGV[at + 2 * i + 1])
      for name, value in string.gmatch(head, '([^;=]+)=(%d+)') do
        if name == stream and tonumber(value) >= offset then
          stale = true
        end
      end
    end
  end
  if stale then
    refused = refused + 1
  elseif ttl > 0 then
    redis.call('SET', KEYS[k], record, 'PX', ttl)
  else
    redis.call('SET', KEYS[k], record)
  end
  at = at + 2 + 2 * count
end
return refused
