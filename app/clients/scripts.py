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
  local levels = (#KEYS - ko - 2) / 2
  local wait = 0
  local tokens = {}
  for i = 0, levels - 1 do
    local tk, ik = KEYS[ko + 3 + 2 * i], KEYS[ko + 4 + 2 * i]
    local rate = tonumber(ARGV[ao + 6 + 3 * i])
    local burst = tonumber(ARGV[ao + 7 + 3 * i])
    local conc = tonumber(ARGV[ao + 8 + 3 * i])
    if conc > 0 then
      redis.call('ZREMRANGEBYSCORE', ik, '-inf', now)
      if redis.call('ZCARD', ik) >= conc then wait = math.max(wait, poll_ms) end
    end
    if rate > 0 then
      local state = redis.call('HMGET', tk, 'tokens', 'at')
      local level = tonumber(state[1]) or burst
      local at = tonumber(state[2]) or now
      level = math.min(burst, level + math.max(0, now - at) * rate / 1000)
      tokens[i] = level
      if level < 1 then
        wait = math.max(wait, math.ceil((1 - level) * 1000 / rate))
      end
    end
  end
  if wait > 0 then return wait end
  for i = 0, levels - 1 do
    local tk, ik = KEYS[ko + 3 + 2 * i], KEYS[ko + 4 + 2 * i]
    local rate = tonumber(ARGV[ao + 6 + 3 * i])
    local burst = tonumber(ARGV[ao + 7 + 3 * i])
    local conc = tonumber(ARGV[ao + 8 + 3 * i])
    if conc > 0 then
      redis.call('ZADD', ik, now + lease_ms, ARGV[ao + 2])
      redis.call('PEXPIRE', ik, lease_ms * 2)
    end
    if rate > 0 then
      redis.call('HSET', tk, 'tokens', tostring(tokens[i] - 1), 'at', tostring(now))
      redis.call('PEXPIRE', tk, math.ceil(burst * 1000 / rate) + 1000)
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
