"""Lua run atomically inside Redis, on Redis's own clock (one clock for every process)."""

from __future__ import annotations

# GCRA (generic cell rate algorithm). KEYS[1] holds the theoretical arrival time
# (TAT, ms). ARGV: emission interval (ms), burst (count), cost.
# Returns {allowed (1/0), retry after (ms), remaining}.
GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local ahead = new_tat - now
if ahead > tolerance then
  return {0, math.ceil(ahead - tolerance), 0}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(ahead)))
return {1, 0, math.floor((tolerance - ahead) / interval)}
"""

# Concurrency slots. KEYS[1] is a sorted set of holders scored by lease expiry (ms);
# a holder whose process died stops renewing and drops out once its lease ends.
# ARGV: holder id, limit, lease (ms). Returns {acquired (1/0), retry after (ms)}.
ACQUIRE_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) - now)}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, 0}
"""

# Renew a held slot's lease (re-adding it if it lapsed while the process was stalled).
RENEW_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""
