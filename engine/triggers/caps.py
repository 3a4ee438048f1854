"""The pressure caps' check and the send's record as one step: a Lua script counts the person's
recent sends against every limit and, when none is reached, records the new send. Two processes
deciding for the same person at once can then never both pass a cap with one place left.

The record is made before the delivery's own transaction: a process that dies in between leaves
the send recorded, and the occurrence, claimed again, finds its own entry (same idempotency key)
and goes on without counting it twice.
"""

from __future__ import annotations

from redis.asyncio import Redis

from engine.store import keys as store_keys
from engine.triggers.suppress import Limit

# KEYS[1]: the person's sends (zset "channel|trigger|key" -> time)
# ARGV: now, the send's member, record (1/0), kept seconds, then per limit: max, window, channel, trigger
# ('' for any). Returns 1 when a limit is reached (nothing recorded), else 0.
_CHECK_AND_RECORD = """
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
local now = tonumber(ARGV[1])
local limits, longest = {}, 0
for i = 5, #ARGV, 4 do
  local window = tonumber(ARGV[i + 1])
  limits[#limits + 1] = {tonumber(ARGV[i]), now - window, ARGV[i + 2], ARGV[i + 3], 0}
  if window > longest then longest = window end
end
if #limits > 0 then
  local sent = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - longest), '+inf', 'WITHSCORES')
  for j = 1, #sent, 2 do
    local ch, tg = string.match(sent[j], '^([^|]*)|([^|]*)|')
    local ts = tonumber(sent[j + 1])
    for _, l in ipairs(limits) do
      if ts > l[2] and (l[3] == '' or l[3] == ch) and (l[4] == '' or l[4] == tg) then l[5] = l[5] + 1 end
    end
  end
  for _, l in ipairs(limits) do
    if l[5] >= l[1] then return 1 end
  end
end
if ARGV[3] == '1' then
  local kept = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - kept)
  redis.call('EXPIRE', KEYS[1], math.floor(kept))
end
return 0
"""


class Caps:
    def __init__(self, redis: Redis, kept_s: float) -> None:
        """``kept_s``: how long a person's send log is kept (the longest cap window honoured)."""
        self._script = redis.register_script(_CHECK_AND_RECORD)
        self._kept_s = kept_s

    async def check(self, person: str, member: str, limits: list[Limit], now: float, *, record: bool) -> bool:
        """True when one more message to ``person`` would exceed a limit. Otherwise, with ``record``,
        ``member`` (``channel|trigger|key``) is added to their sends in the same step."""
        args: list[object] = [now, member, 1 if record else 0, self._kept_s]
        for lim in limits:
            args += [lim.max, lim.window_s, lim.channel or "", lim.trigger or ""]
        return bool(await self._script(keys=[store_keys.trigger_sends(person)], args=args))
