-- Reclaim a bucket's device records idle past the expiry (layout 2, issue 21: a hash field has
-- no expiry of its own in Redis 7.0, so this does what a key's did). A record's last seen
-- (event time, ms) is in its packed fields: after the head and the state JSON (two newlines;
-- JSON escapes newlines), a flags byte (1: last seen follows) and 8 bytes, big-endian, signed.
-- Checked here, in the same script as the deletion: a record saved since it was scanned is
-- judged by what it is now. Records without a last seen, or of format 1 (never written in a
-- bucket: the move from layout 1 writes format 2), are kept.
-- KEYS[1]: the bucket. ARGV[1]: the cutoff (a last seen before it is idle past the expiry);
-- ARGV[2]: the HSCAN cursor; ARGV[3]: its COUNT. Returns {next cursor, records removed,
-- records looked at}.
local cutoff = tonumber(ARGV[1])
local scanned = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local fields = scanned[2]
local removed = 0
for i = 1, #fields, 2 do
  local record = fields[i + 1]
  local head_end = string.find(record, '\n', 1, true)
  local body_end = head_end and string.find(record, '\n', head_end + 1, true)
  if body_end and string.find(string.sub(record, 1, head_end), '#=2', 1, true) then
    local flags = string.byte(record, body_end + 1) or 0
    if flags % 2 == 1 and #record >= body_end + 9 then
      local seen = 0
      for b = body_end + 2, body_end + 9 do
        seen = seen * 256 + string.byte(record, b)
      end
      if string.byte(record, body_end + 2) >= 128 then
        seen = seen - 18446744073709551616
      end
      if seen < cutoff then
        removed = removed + redis.call('HDEL', KEYS[1], fields[i])
      end
    end
  end
end
return {scanned[1], removed, #fields / 2}
