-- Shared by the budget scripts (prepended to each). Counter hashes hold `s` (spent) and
-- `r` (reserved) in micro-USD; a reservation hash holds `a` (amount), `d` (deadline ms),
-- `n` (chain length) and `1`..`n` (the counter keys it was made on). Amounts travel as the
-- decimal strings Rust sent, so Redis' 64-bit integer commands see them exactly.
-- NB: release and sweep touch counter keys named inside the reservation rather than in
-- KEYS; on Redis Cluster, give every key one hash tag through the key prefix.

local function load_reservation(rkey)
  local flat = redis.call('HGETALL', rkey)
  if #flat == 0 then
    return nil
  end
  local r = {}
  for i = 1, #flat, 2 do
    r[flat[i]] = flat[i + 1]
  end
  return r
end

-- Takes a reservation off its counters (and charges `actual`, if given), then forgets it.
local function release(deadlines, rid, rkey, r, actual)
  for i = 1, tonumber(r['n']) do
    local ckey = r[tostring(i)]
    if r['a'] ~= '0' then
      if redis.call('HINCRBY', ckey, 'r', '-' .. r['a']) < 0 then
        redis.call('HSET', ckey, 'r', '0')
      end
    end
    if actual ~= nil and actual ~= '0' then
      redis.call('HINCRBY', ckey, 's', actual)
    end
  end
  redis.call('DEL', rkey)
  redis.call('ZREM', deadlines, rid)
end

-- Releases up to `limit` reservations whose deadline is before `now`; returns how many.
local function sweep(deadlines, rprefix, now, limit)
  local expired = redis.call('ZRANGEBYSCORE', deadlines, '-inf', '(' .. now, 'LIMIT', 0, limit)
  for _, rid in ipairs(expired) do
    local rkey = rprefix .. rid
    local r = load_reservation(rkey)
    if r then
      release(deadlines, rid, rkey, r, nil)
    else
      redis.call('ZREM', deadlines, rid)
    end
  end
  return #expired
end
