-- Merge customers into one, atomically, if nothing changed since Python read them (else 0: the
-- caller re-reads and recomputes, as the applier does). Python computed the merged profile and the
-- relinked cookies; this script compares, then writes them, turns each merged-away id into an
-- alias of the survivor (and every id merged into it before), and moves its identity record.
--
-- KEYS: survivor profile, survivor identity, survivor alias; per source: profile, identity, alias;
--       then the cookies' profile keys.
-- ARGV: survivor id, n_sources, n_cookies, survivor old profile, new profile, profile ttl;
--       per source: old profile, its history entry (JSON); per cookie: old, new, ttl.
local into = ARGV[1]
local n_sources, n_cookies = tonumber(ARGV[2]), tonumber(ARGV[3])
local shop = string.sub(KEYS[1], 1, #KEYS[1] - #into - 4)  -- before 'c:{<into>}': the shop's key prefix
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[4] or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
for s = 0, n_sources - 1 do
  local k, a = 4 + 3 * s, 7 + 2 * s
  if (redis.call('GET', KEYS[k]) or '') ~= ARGV[a] or redis.call('EXISTS', KEYS[k + 2]) == 1 then return 0 end
end
local cookie_k, cookie_a = 4 + 3 * n_sources, 7 + 2 * n_sources
for c = 0, n_cookies - 1 do
  if (redis.call('GET', KEYS[cookie_k + c]) or '') ~= ARGV[cookie_a + 3 * c] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[6])
for s = 0, n_sources - 1 do
  local k, a = 4 + 3 * s, 7 + 2 * s
  local source = string.sub(KEYS[k], #shop + 4, -2)  -- c:{id}
  local moved = redis.call('HGETALL', KEYS[k + 1])
  for i = 1, #moved, 2 do
    redis.call('HSET', KEYS[2], moved[i], moved[i + 1])
    if string.sub(moved[i], 1, 2) == 'm:' then  -- merged into the source before: now into the survivor
      redis.call('SET', shop .. 'ca:{' .. string.sub(moved[i], 3) .. '}', into)
    end
  end
  redis.call('HSET', KEYS[2], 'm:' .. source, ARGV[a + 1])
  redis.call('DEL', KEYS[k], KEYS[k + 1])
  redis.call('SET', KEYS[k + 2], into)
end
for c = 0, n_cookies - 1 do
  local a = cookie_a + 3 * c
  redis.call('SET', KEYS[cookie_k + c], ARGV[a + 1], 'EX', ARGV[a + 2])
end
return 1
