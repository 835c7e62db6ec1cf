-- Load device records (layout 2, issue 21: a record is the field named by its device key in
-- its bucket hash). KEYS: each device's bucket, in order (a bucket repeats for each of its
-- devices); ARGV: the device keys, in the same order. Returns each record, or nil.
local records = {}
for k = 1, #KEYS do
  records[k] = redis.call('HGET', KEYS[k], ARGV[k])
end
return records
