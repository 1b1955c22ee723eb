"""Lua shared by the rate budget's script and the document cache's.

The budget's grant lives here rather than in app/clients/budget.py so that the cache's script
can take a grant in the same round trip as the probe that decides to fetch (and give it back
in the same round trip as the store that ends the fetch): both scripts define the same
functions from this text.
"""

from __future__ import annotations

# Keys per level (see acquire below).
LEVEL_KEYS = 3

# acquire(ko, ao): KEYS[ko+1] penalty, KEYS[ko+2] calls-today, KEYS[ko+3] quota window, then
# per level: tokens, in-flight, window log (to the end of KEYS). ARGV[ao+1..ao+9]: quota (0 =
# none), lease id, lease ms, calls ttl s, poll ms, quota window ms, quota bucket ms, quota
# remaining as the ATS last reported it (-1 = none), when it reported it (epoch ms); then per
# level: rate per s (0 = none), burst, concurrency (0 = none), window ms, calls per window,
# remaining as the ATS last reported it (-1 = none), when (epoch ms).
# Returns 0 when granted, else milliseconds to wait; takes nothing unless it grants (what the
# ATS reported is written down either way, unless a penalty or a spent quota answers first).
#
# The window log is a sorted set of the grants of the last window (score: when granted): a
# call is granted only while fewer than ``calls per window`` were granted in the window
# before it, so no window of that length, wherever it starts, holds more (a token bucket's
# burst let a second's worth more into one second). The daily quota is the same over 24 h in
# buckets (a hash: bucket -> calls, with 'first' and 'total'), counted whole while any part
# of them is in the window, so it errs on the side of waiting.
#
# What the ATS reports (X-RateLimit-Remaining) becomes grants of someone else: if the window
# before the report holds fewer than ``limit - remaining`` of ours, the rest are added at the
# time of the report (idempotent, so a report applied twice counts once).
#
# release(first, step, lease): removes the lease from every in-flight key from KEYS[first]
# to the end, every ``step`` keys.
BUDGET_FUNCTIONS = """
local function quota_trim(qk, oldest, buckets)
  local st = redis.call('HMGET', qk, 'first', 'total')
  local first = tonumber(st[1])
  local total = tonumber(st[2]) or 0
  if not first then return 0, oldest end
  if first >= oldest then return total, first end
  if oldest - first >= buckets then
    redis.call('DEL', qk)
    return 0, oldest
  end
  for b = first, oldest - 1 do
    local n = tonumber(redis.call('HGET', qk, tostring(b)) or '0')
    if n > 0 then
      total = total - n
      redis.call('HDEL', qk, tostring(b))
    end
  end
  redis.call('HSET', qk, 'first', tostring(oldest), 'total', tostring(total))
  return total, oldest
end
local function acquire(ko, ao)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local penalty = redis.call('PTTL', KEYS[ko + 1])
  if penalty > 0 then return penalty end
  local lease = ARGV[ao + 2]
  local quota = tonumber(ARGV[ao + 1])
  local qk = KEYS[ko + 3]
  local qwin = tonumber(ARGV[ao + 6])
  local qb = tonumber(ARGV[ao + 7])
  local buckets = math.ceil(qwin / qb) + 1
  local current = math.floor(now / qb)
  local wait = 0
  if quota > 0 then
    local total, first = quota_trim(qk, current - buckets + 1, buckets)
    local remaining = tonumber(ARGV[ao + 8])
    if remaining >= 0 and total < quota - remaining then
      local at = math.floor(math.min(now, tonumber(ARGV[ao + 9])) / qb)
      if at > current - buckets then
        first = math.min(first, at)
        redis.call('HINCRBY', qk, tostring(at), quota - remaining - total)
        redis.call('HSET', qk, 'first', tostring(first), 'total', tostring(quota - remaining))
        redis.call('PEXPIRE', qk, qwin + 2 * qb)
        total = quota - remaining
      end
    end
    if total >= quota then
      -- Wait for the oldest buckets to leave the window until one call fits.
      local over = total - quota + 1
      for b = first, current do
        over = over - tonumber(redis.call('HGET', qk, tostring(b)) or '0')
        if over <= 0 then return (b + buckets) * qb - now end
      end
      return qb
    end
  end
  local lease_ms = tonumber(ARGV[ao + 3])
  local poll_ms = tonumber(ARGV[ao + 5])
  local levels = {}
  for i = 0, (#KEYS - ko - 3) / 3 - 1 do
    local a = ao + 10 + 7 * i
    local lv = {
      tk = KEYS[ko + 4 + 3 * i], ik = KEYS[ko + 5 + 3 * i], wk = KEYS[ko + 6 + 3 * i],
      rate = tonumber(ARGV[a]), burst = tonumber(ARGV[a + 1]), conc = tonumber(ARGV[a + 2]),
      win = tonumber(ARGV[a + 3]), per = tonumber(ARGV[a + 4]),
      remaining = tonumber(ARGV[a + 5]), at = math.min(now, tonumber(ARGV[a + 6])),
    }
    levels[#levels + 1] = lv
    if lv.conc > 0 then
      redis.call('ZREMRANGEBYSCORE', lv.ik, '-inf', now)
      if redis.call('ZCARD', lv.ik) >= lv.conc then wait = math.max(wait, poll_ms) end
    end
    if lv.win > 0 then
      redis.call('ZREMRANGEBYSCORE', lv.wk, '-inf', now - lv.win)
      if lv.remaining >= 0 and lv.at > now - lv.win then
        local seen = redis.call('ZCOUNT', lv.wk, '(' .. tostring(lv.at - lv.win), tostring(lv.at))
        for j = 1, lv.per - lv.remaining - seen do
          redis.call('ZADD', lv.wk, lv.at, 'r:' .. lease .. ':' .. j)
        end
        redis.call('PEXPIRE', lv.wk, lv.win + 1000)
      end
      local count = redis.call('ZCARD', lv.wk)
      if count >= lv.per then
        -- The grant that must leave the window before one more call fits in it.
        local leaving = redis.call('ZRANGE', lv.wk, count - lv.per, count - lv.per, 'WITHSCORES')
        wait = math.max(wait, tonumber(leaving[2]) + lv.win - now + 1)
      end
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
      redis.call('ZADD', lv.ik, now + lease_ms, lease)
      redis.call('PEXPIRE', lv.ik, lease_ms * 2)
    end
    if lv.win > 0 then
      redis.call('ZADD', lv.wk, now, lease)
      redis.call('PEXPIRE', lv.wk, lv.win + 1000)
    end
    if lv.rate > 0 then
      redis.call('HSET', lv.tk, 'tokens', tostring(lv.tokens - 1), 'at', tostring(now))
      redis.call('PEXPIRE', lv.tk, math.ceil(lv.burst * 1000 / lv.rate) + 1000)
    end
  end
  if quota > 0 then
    redis.call('HINCRBY', qk, tostring(current), 1)
    redis.call('HINCRBY', qk, 'total', 1)
    redis.call('HSETNX', qk, 'first', tostring(current))
    redis.call('PEXPIRE', qk, qwin + 2 * qb)
  end
  redis.call('INCR', KEYS[ko + 2])
  redis.call('EXPIRE', KEYS[ko + 2], tonumber(ARGV[ao + 4]))
  return 0
end
local function release(first, step, lease)
  for i = first, #KEYS, step do redis.call('ZREM', KEYS[i], lease) end
end
"""
