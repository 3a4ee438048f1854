-- Read what applying a batch needs, in one call: each visitor's profile, which of its event
-- fingerprints are already recorded (current or previous dedup bucket), its exposure state and
-- when it was last erased, then customer keys.
--
-- KEYS: per visitor (profile, dedup now, dedup previous, exposure, erasure), then customer keys.
-- ARGV: number of visitors, then per visitor its 8-byte fingerprints concatenated (one argument:
--       client-side cost is per argument).
-- Returns per visitor: the profile (nil if none), a string with '1' (seen) or '0' per
-- fingerprint, the exposure state and the erasure time (nil if none); then each customer key's value.
local n_visitors = tonumber(ARGV[1])
local out = {}
local a = 2
for i = 0, n_visitors - 1 do
  local k = 5 * i
  out[#out + 1] = redis.call('GET', KEYS[k + 1])
  local fps = ARGV[a]
  local seen = {}
  for j = 1, #fps / 8 do
    local fp = string.sub(fps, 8 * j - 7, 8 * j)
    if redis.call('HEXISTS', KEYS[k + 2], fp) == 1 or redis.call('HEXISTS', KEYS[k + 3], fp) == 1 then
      seen[j] = '1'
    else
      seen[j] = '0'
    end
  end
  out[#out + 1] = table.concat(seen)
  out[#out + 1] = redis.call('GET', KEYS[k + 4])
  out[#out + 1] = redis.call('GET', KEYS[k + 5])
  a = a + 1
end
for c = 5 * n_visitors + 1, #KEYS do out[#out + 1] = redis.call('GET', KEYS[c]) end
return out
