--[[
seed-clocks-1.lua: seed a document's clock map (see append-3.lua) from what the caller read of
storage + stream, unless another caller seeded it first. append-3.lua refuses updates with structs
until the map is seeded, so nothing was appended between the caller's read and this call.

KEYS[1]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  TTL in ms for a meta hash this call creates (the next append makes it persistent)
ARGV[2..] pairs: client, next clock (decimal strings)

returns  1 if this call seeded the map, 0 if it was seeded already
]]
local meta = KEYS[1]
if redis.call('HEXISTS', meta, 'clocks') == 1 then return 0 end
local existed = redis.call('EXISTS', meta) == 1
for i = 2, #ARGV, 2 do
  redis.call('HSET', meta, 'k:' .. ARGV[i], ARGV[i + 1])
end
redis.call('HSET', meta, 'clocks', '1')
if not existed then redis.call('PEXPIRE', meta, ARGV[1]) end
return 1
