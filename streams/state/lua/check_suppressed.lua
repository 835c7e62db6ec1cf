-- R39: which of a batch's id digests the suppression list holds, sent as one argument
-- (each argument costs the worker about a microsecond to send; a batch has thousands).
-- KEYS[1]: the suppression set. ARGV[1]: the digests, concatenated; ARGV[2]: their width.
-- Returns {the size of the set, the 1-based index of each digest it holds}; while the list
-- is empty (the usual case) nothing is looked up.
local size = redis.call('SCARD', KEYS[1])
local result = {size}
if size == 0 then
  return result
end
local blob = ARGV[1]
local width = tonumber(ARGV[2])
local count = #blob / width
local chunk = {}
local first = 1
for i = 1, count do
  chunk[#chunk + 1] = string.sub(blob, (i - 1) * width + 1, i * width)
  -- SMISMEMBER in chunks: unpack's arguments live on Lua's C stack (8,000 at most)
  if #chunk == 1000 or i == count then
    local held = redis.call('SMISMEMBER', KEYS[1], unpack(chunk))
    for j = 1, #held do
      if held[j] == 1 then
        result[#result + 1] = first + j - 1
      end
    end
    first = i + 1
    chunk = {}
  end
end
return result
