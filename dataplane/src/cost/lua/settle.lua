
-- settle: charge the actual cost and release the reservation, once.
-- KEYS[1] reservation hash, KEYS[2] deadlines sorted set.
-- ARGV[1] reservation id, ARGV[2] actual cost.
-- Returns 1 if settled, 0 if the reservation is unknown (settled or expired already).
local r = load_reservation(KEYS[1])
if not r then
  return 0
end
release(KEYS[2], ARGV[1], KEYS[1], r, ARGV[2])
return 1
