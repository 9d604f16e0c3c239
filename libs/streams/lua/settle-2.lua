--[[
settle-2.lua: a worker is done with one delivery of a task: acknowledge and delete the stream entry,
and, when the task is not finished, put it back into the delayed set for later, atomically (the task
never exists nowhere).

KEYS[1]  task stream                 <p>:v1:{qN}:tasks
KEYS[2]  delayed tasks (sorted set)  <p>:v1:{qN}:delayed
ARGV[1]  consumer group
ARGV[2]  stream entry id of the delivery
ARGV[3]  delay in ms from now (Redis time) until the task is due again, or "" when it is finished
ARGV[4]  member "<token> <doc>" (used when rescheduling)

returns  1 if the entry was still pending for the group (else another worker settled it first)
]]
--- @include "redis-time"

local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], redisTimeMs() + tonumber(ARGV[3]), ARGV[4])
end
return acked
