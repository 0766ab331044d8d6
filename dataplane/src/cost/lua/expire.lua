
-- expire: release reservations past their deadline.
-- KEYS[1] deadlines sorted set. ARGV[1] reservation key prefix, ARGV[2] now ms, ARGV[3] limit.
-- Returns how many were released (the caller repeats while it gets `limit`).
return sweep(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
