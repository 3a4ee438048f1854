-- Apply one visitor's events atomically: compare-and-set the profiles, record the event
-- fingerprints, bump trending counters. Python computed the new profiles from the values it read;
-- if any profile changed since, or an event was recorded meanwhile, nothing is written and 0 is
-- returned so the caller re-reads and recomputes. That makes at-least-once delivery exact.
--
-- KEYS: n_cas profile keys, then the current and previous dedup buckets, then one key per
--       trending increment.
-- ARGV: n_cas, then per profile (old value or '', new value, ttl seconds),
--       then dedup expire-at, n_fp, the fingerprints,
--       then per trending key (member, increment, expire-at).
local n_cas = tonumber(ARGV[1])
local a = 2
for i = 1, n_cas do
  local current = redis.call('GET', KEYS[i]) or ''
  if current ~= ARGV[a] then return 0 end
  a = a + 3
end
local dedup_now, dedup_prev = KEYS[n_cas + 1], KEYS[n_cas + 2]
local dedup_expire_at = ARGV[a]
local n_fp = tonumber(ARGV[a + 1])
local fp0 = a + 2
for j = 0, n_fp - 1 do
  local fp = ARGV[fp0 + j]
  if redis.call('HEXISTS', dedup_now, fp) == 1 or redis.call('HEXISTS', dedup_prev, fp) == 1 then
    return 0
  end
end
a = 2
for i = 1, n_cas do
  if ARGV[a + 1] ~= '' then
    redis.call('SET', KEYS[i], ARGV[a + 1], 'EX', ARGV[a + 2])
  end
  a = a + 3
end
for j = 0, n_fp - 1 do
  redis.call('HSET', dedup_now, ARGV[fp0 + j], '')
end
if n_fp > 0 then redis.call('EXPIREAT', dedup_now, dedup_expire_at) end
a = fp0 + n_fp
for k = n_cas + 3, #KEYS do
  redis.call('ZINCRBY', KEYS[k], ARGV[a + 1], ARGV[a])
  redis.call('EXPIREAT', KEYS[k], ARGV[a + 2])
  a = a + 3
end
return 1
