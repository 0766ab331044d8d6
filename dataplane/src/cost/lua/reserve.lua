
-- reserve: hold an amount on every counter of a chain, or on none.
-- KEYS[1] reservation hash, KEYS[2] deadlines sorted set, KEYS[3..] the chain's counters.
-- ARGV[1] reservation id, ARGV[2] amount, ARGV[3] deadline ms, ARGV[4] now ms,
-- ARGV[5] reservation key prefix, ARGV[6] sweep limit, then for counter i (from 1):
-- ARGV[4+3i] limit, ARGV[5+3i] hard ('1' or '0'), ARGV[6+3i] time to live ms ('0': for ever).
-- Returns {1} admitted, {2} already reserved under this id, {0, i, remaining} refused by
-- counter i (remaining = limit - spent - reserved, at least 0).
local rkey, deadlines = KEYS[1], KEYS[2]
local rid, amount, deadline = ARGV[1], ARGV[2], ARGV[3]
sweep(deadlines, ARGV[5], ARGV[4], tonumber(ARGV[6]))
if redis.call('EXISTS', rkey) == 1 then
  return {2}
end
local n = #KEYS - 2
local want = tonumber(amount)
local fresh = {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[2 + i], 's', 'r')
  fresh[i] = not v[1] and not v[2]
  if ARGV[5 + 3 * i] == '1' then
    local used = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
    local limit = tonumber(ARGV[4 + 3 * i])
    if used + want > limit then
      local remaining = limit - used
      if remaining < 0 then
        remaining = 0
      end
      return {0, i, remaining}
    end
  end
end
local fields = {'a', amount, 'd', deadline, 'n', tostring(n)}
for i = 1, n do
  local ckey = KEYS[2 + i]
  redis.call('HINCRBY', ckey, 'r', amount)
  local ttl = ARGV[6 + 3 * i]
  if fresh[i] and ttl ~= '0' then
    redis.call('PEXPIRE', ckey, ttl)
  end
  fields[#fields + 1] = tostring(i)
  fields[#fields + 1] = ckey
end
redis.call('HSET', rkey, unpack(fields))
redis.call('ZADD', deadlines, deadline, rid)
return {1}
