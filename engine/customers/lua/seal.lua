-- Step 1 of a merge on a Redis Cluster, in the absorbed customer's slot: read its profile and
-- tombstone it in the same script, so no event can change it after it was read. The profile, its
-- identity record and the fingerprints of the events already in it move to its pending-merge
-- record; the id becomes an alias of the survivor at once (readers and the applier follow it).
--
-- KEYS: c:{id}, ci:{id}, ca:{id}, cm:{id}, dc:{id}:<bucket>, dc:{id}:<bucket - 1>
-- ARGV: survivor id, history entry (JSON), bucket, bucket - 1
-- Returns {2, pending fields...} (sealed now or before: the merge to complete), {1, target}
-- (merged before and complete) or {0} (no profile).
local pending = redis.call('HGETALL', KEYS[4])
if #pending > 0 then return {2, unpack(pending)} end
local target = redis.call('GET', KEYS[3])
if target then return {1, target} end
local profile = redis.call('GET', KEYS[1])
if not profile then return {0} end
local out = {'into', ARGV[1], 'p', profile, 'h', ARGV[2]}
local identity = redis.call('HGETALL', KEYS[2])
for i = 1, #identity, 2 do
  out[#out + 1] = 'i:' .. identity[i]
  out[#out + 1] = identity[i + 1]
end
for b = 0, 1 do
  local fps = redis.call('HKEYS', KEYS[5 + b])
  if #fps > 0 then
    out[#out + 1] = 'd:' .. ARGV[3 + b]
    out[#out + 1] = table.concat(fps)
  end
end
for i = 1, #out, 2 do redis.call('HSET', KEYS[4], out[i], out[i + 1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return {2, unpack(out)}
