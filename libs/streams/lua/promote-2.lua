--[[
promote-2.lua: move compaction tasks whose due time has come from the shard's delayed set into the
shard's task stream, where workers read them with XREADGROUP. Atomic per task: a task is always in
exactly one of the two.

KEYS[1]  delayed tasks (sorted set)  <p>:v1:{qN}:delayed   member "<token> <doc>", score due ms
KEYS[2]  task stream                 <p>:v1:{qN}:tasks
ARGV[1]  most tasks to move

returns  number of tasks moved
]]
--- @include "redis-time"

local nowMs = redisTimeMs()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowMs, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local token, doc = string.match(member, '^(%S+) (.+)$')
  redis.call('XADD', KEYS[2], '*', 'd', doc, 't', token)
  redis.call('ZREM', KEYS[1], member)
end
return #due
