-- A cookie of a merged-away customer, relinked to the survivor if unchanged since read (else 0:
-- re-read). One cookie, one slot.
-- KEYS: v:{cookie}   ARGV: old profile, new profile, ttl
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
