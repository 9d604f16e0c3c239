--[[
heartbeat-1.lua: a server node says it is alive and learns which nodes are not.

KEYS[1]  node registry (sorted set)  <p>:v1:nodes   member = node id, score = last heartbeat (ms)
ARGV[1]  node id
ARGV[2]  liveness timeout in ms: a node silent for longer counts as dead
ARGV[3]  forget-after in ms: dead nodes silent for longer are removed from the registry

returns  { nowMs, dead }  Redis time; ids of dead nodes still remembered
]]
--- @include "redis-time"

local nowMs = redisTimeMs()
redis.call('ZADD', KEYS[1], nowMs, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs - tonumber(ARGV[3]))
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (nowMs - tonumber(ARGV[2])))
return { nowMs, dead }
