-- Step 2 of a merge on a Redis Cluster, in the survivor's slot: add the sealed profile to the
-- survivor's (Python combined them from the values read) if the survivor is unchanged, and record
-- the merged id in the survivor's identity record in the same script, so a repeat is a no-op.
-- The fingerprints of the events the sealed profile held join the survivor's dedup buckets: a
-- half-applied event retried later, now redirected by the alias, is not counted twice.
--
-- KEYS: c:{survivor}, ci:{survivor}, ca:{survivor}, then one dc:{survivor}:<bucket> per bucket
-- ARGV: merged id, survivor's old profile (or ''), new profile, ttl, history entry, n_identity,
--       identity field/value pairs, then per bucket: concatenated 8-byte fingerprints, expire-at
-- Returns 1 (merged before: nothing done), 2 (merged now), 0 (survivor changed: re-read),
-- -1 (the survivor was merged into another customer: follow it).
if redis.call('HEXISTS', KEYS[2], 'm:' .. ARGV[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
local n_identity = tonumber(ARGV[6])
for i = 0, n_identity - 1 do redis.call('HSET', KEYS[2], ARGV[7 + 2 * i], ARGV[8 + 2 * i]) end
redis.call('HSET', KEYS[2], 'm:' .. ARGV[1], ARGV[5])
local a = 7 + 2 * n_identity
for k = 4, #KEYS do
  local fps = ARGV[a]
  for j = 1, #fps / 8 do redis.call('HSET', KEYS[k], string.sub(fps, 8 * j - 7, 8 * j), '') end
  redis.call('EXPIREAT', KEYS[k], ARGV[a + 1])
  a = a + 2
end
return 2
