-- Apply a batch of visitors' plans, each atomically: compare-and-set the profiles, record the
-- event fingerprints, bump trending counters. Python computed the new profiles from the values it
-- read; if any profile of a plan changed since, or one of its events was recorded meanwhile, that
-- plan writes nothing and gets 0, so the caller re-reads and recomputes it. That makes
-- at-least-once delivery exact. Plans run in order, so a customer changed by one plan is the
-- "old" value the next plan touching it compares with.
--
-- ARGV: dedup expire-at, number of plans, then per plan (or all of it as one MessagePack array, one
--       argument: the client's cost is per argument, so the single-Redis applier packs them):
--       n_cas, per profile (old value or '', new value or '' to keep, ttl seconds),
--       the 8-byte event fingerprints concatenated, n_trend, per trending key
--       (member, increment as a string, expire-at; 0: no TTL, for counters that must outlive any
--       eviction).
-- KEYS: per plan: its n_cas profile keys, its current and previous dedup buckets, its n_trend
--       trending keys.
-- Returns one 1 (written) or 0 (conflict) per plan.
local ARGV = #ARGV == 1 and cmsgpack.unpack(ARGV[1]) or ARGV
local dedup_expire_at = ARGV[1]
local n_plans = tonumber(ARGV[2])
local a, k = 3, 1
local results = {}
for p = 1, n_plans do
  local n_cas = tonumber(ARGV[a])
  local cas = a + 1
  local fps = ARGV[cas + 3 * n_cas]
  local n_fp = #fps / 8
  local trend_at = cas + 3 * n_cas + 1
  local n_trend = tonumber(ARGV[trend_at])
  local dedup_now, dedup_prev = KEYS[k + n_cas], KEYS[k + n_cas + 1]
  local ok = 1
  for i = 0, n_cas - 1 do
    if (redis.call('GET', KEYS[k + i]) or '') ~= ARGV[cas + 3 * i] then
      ok = 0
      break
    end
  end
  if ok == 1 then
    for j = 1, n_fp do
      local fp = string.sub(fps, 8 * j - 7, 8 * j)
      if redis.call('HEXISTS', dedup_now, fp) == 1 or redis.call('HEXISTS', dedup_prev, fp) == 1 then
        ok = 0
        break
      end
    end
  end
  if ok == 1 then
    for i = 0, n_cas - 1 do
      local new = ARGV[cas + 3 * i + 1]
      if new ~= '' then redis.call('SET', KEYS[k + i], new, 'EX', ARGV[cas + 3 * i + 2]) end
    end
    for j = 1, n_fp do redis.call('HSET', dedup_now, string.sub(fps, 8 * j - 7, 8 * j), '') end
    if n_fp > 0 then redis.call('EXPIREAT', dedup_now, dedup_expire_at) end
    for t = 0, n_trend - 1 do
      local key, arg = KEYS[k + n_cas + 2 + t], trend_at + 1 + 3 * t
      redis.call('ZINCRBY', key, ARGV[arg + 1], ARGV[arg])
      if tonumber(ARGV[arg + 2]) == 0 then redis.call('PERSIST', key) else redis.call('EXPIREAT', key, ARGV[arg + 2]) end
    end
  end
  results[p] = ok
  a = trend_at + 1 + 3 * n_trend
  k = k + n_cas + 2 + n_trend
end
return results
