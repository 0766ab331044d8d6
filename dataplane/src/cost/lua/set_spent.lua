
-- set_spent: rebuild a counter's spent from the ledger (a SET, never an increment).
-- KEYS[1] counter hash. ARGV[1] spent, ARGV[2] time to live ms ('0': for ever).
redis.call('HSET', KEYS[1], 's', ARGV[1])
if ARGV[2] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
