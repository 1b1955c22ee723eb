"""Lua shared by the rate budget's script and the document cache's.

The budget's grant lives here rather than in app/clients/budget.py so that the cache's script
can take a grant in the same round trip as the probe that decides to fetch (and give it back
in the same round trip as the store that ends the fetch): both scripts define the same
functions from this text.
"""

from __future__ import annotations

# acquire(ko, ao): KEYS[ko+1] penalty, KEYS[ko+2] calls-today, then per level: tokens,
# in-flight (to the end of KEYS). ARGV[ao+1..ao+5]: quota (0 = none), lease id, lease ms,
# calls ttl s, poll ms, then per level: rate per s (0 = none), burst, concurrency (0 = none).
# Returns 0 when granted, -1 when the daily quota is spent, else milliseconds to wait; takes
# nothing unless it grants.
# release(first, step, lease): removes the lease from every in-flight key from KEYS[first]
# to the end, every ``step`` keys.
BUDGET_FUNCTIONS = """
local function acquire(ko, ao)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local penalty = redis.call('PTTL', KEYS[ko + 1])
  if penalty > 0 then return penalty end
  local quota = tonumber(ARGV[ao + 1])
  if quota > 0 and tonumber(redis.call('GET', KEYS[ko + 2]) or '0') >= quota then return -1 end
  local lease_ms = tonumber(ARGV[ao + 3])
  local poll_ms = tonumber(ARGV[ao + 5])
  local wait = 0
  local levels = {}
  for i = 0, (#KEYS - ko - 2) / 2 - 1 do
    local lv = {
      tk = KEYS[ko + 3 + 2 * i], ik = KEYS[ko + 4 + 2 * i],
      rate = tonumber(ARGV[ao + 6 + 3 * i]), burst = tonumber(ARGV[ao + 7 + 3 * i]),
      conc = tonumber(ARGV[ao + 8 + 3 * i]),
    }
    levels[#levels + 1] = lv
    if lv.conc > 0 then
      redis.call('ZREMRANGEBYSCORE', lv.ik, '-inf', now)
      if redis.call('ZCARD', lv.ik) >= lv.conc then wait = math.max(wait, poll_ms) end
    end
    if lv.rate > 0 then
      local state = redis.call('HMGET', lv.tk, 'tokens', 'at')
      local level = tonumber(state[1]) or lv.burst
      local at = tonumber(state[2]) or now
      lv.tokens = math.min(lv.burst, level + math.max(0, now - at) * lv.rate / 1000)
      if lv.tokens < 1 then
        wait = math.max(wait, math.ceil((1 - lv.tokens) * 1000 / lv.rate))
      end
    end
  end
  if wait > 0 then return wait end
  -- Granted: take from every level what was checked above.
  for _, lv in ipairs(levels) do
    if lv.conc > 0 then
      redis.call('ZADD', lv.ik, now + lease_ms, ARGV[ao + 2])
      redis.call('PEXPIRE', lv.ik, lease_ms * 2)
    end
    if lv.rate > 0 then
      redis.call('HSET', lv.tk, 'tokens', tostring(lv.tokens - 1), 'at', tostring(now))
      redis.call('PEXPIRE', lv.tk, math.ceil(lv.burst * 1000 / lv.rate) + 1000)
    end
  end
  redis.call('INCR', KEYS[ko + 2])
  redis.call('EXPIRE', KEYS[ko + 2], tonumber(ARGV[ao + 4]))
  return 0
end
local function release(first, step, lease)
  for i = first, #KEYS, step do redis.call('ZREM', KEYS[i], lease) end
end
"""
