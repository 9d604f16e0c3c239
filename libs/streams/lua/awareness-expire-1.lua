--[[
awareness-expire-1.lua: remove the awareness states of clients whose server node died, or that
were not renewed in time, and tell every node serving the document (clock + 1, state null: the way
y-protocols announces that a client left).

KEYS[1]  awareness hash             <p>:v1:{doc}:a    (records as in awareness-set-1.lua)
ARGV[1]  doorbell channel           <p>:v1:{doc}:c
ARGV[2]  origin written on the relay message
ARGV[3]  staleness limit in ms: records not updated for longer are removed
ARGV[4..] ids of dead nodes: records whose owner origin starts with "<id>~" are removed

relay    SPUBLISH "a <origin>\n<awareness update>" when anything was removed
returns  number of removed states
]]
--- @include "redis-time"
--- @include "varuint"
--- @include "awareness-record"

local hash, channel, origin, staleMs = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
local nowMs = redisTimeMs()

local removed = {}
local fields = redis.call('HGETALL', hash)
for i = 1, #fields, 2 do
  local client, record = fields[i], fields[i + 1]
  local clock, _, node, updated = parseRecord(record)
  if clock and (dead[node] or nowMs - tonumber(updated) > staleMs) then
    redis.call('HDEL', hash, client)
    removed[#removed + 1] = varuint(tonumber(client)) .. varuint(tonumber(clock) + 1) .. varuint(4) .. 'null'
  end
end
if #removed > 0 then
  redis.call('SPUBLISH', channel, 'a ' .. origin .. '\n' .. varuint(#removed) .. table.concat(removed))
end
return #removed
