--[[
redis-time.lua: the Redis server clock. Scripts take time from Redis, not from the caller, so
stream ids, due times, heartbeats and awareness ages of every process share one clock.

redisTimeMs()  Redis time (TIME) in whole ms
]]
local function redisTimeMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
