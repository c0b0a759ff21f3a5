-- The shared rate limit: one client's GCRA (generic cell rate algorithm)
-- decision, taken atomically in Redis for every gateway replica at once.
--
-- KEYS[1]  the client's key; it holds the client's theoretical arrival time
--          (TAT), in microseconds of Redis's clock, and expires when the
--          client's quota is full again
-- ARGV[1]  the emission interval: microseconds per request (1e6 / rate)
-- ARGV[2]  the burst: requests allowed at once
--
-- Returns {allowed (1 or 0), remaining burst, retry after (µs), reset after (µs)}.
-- Redis's clock, not the replicas': one clock for every caller.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local emission = tonumber(ARGV[1])
local tolerance = emission * tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + emission
if new_tat - now > tolerance then
  return {0, 0, new_tat - tolerance - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((tolerance - (new_tat - now)) / emission), 0, new_tat - now}
