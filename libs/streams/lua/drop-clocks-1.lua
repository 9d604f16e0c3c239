--[[
drop-clocks-1.lua: forget a document's clock map (see append-3.lua); the next append with structs
seeds it again from storage + stream. Run after a document's storage was deleted: a seed that read
the old storage in the meantime would otherwise refuse the new document's updates.

KEYS[1]  document meta hash         <p>:v1:{doc}:m

returns  the number of fields dropped
]]
local meta = KEYS[1]
local fields = {}
for _, field in ipairs(redis.call('HKEYS', meta)) do
  if field == 'clocks' or string.sub(field, 1, 2) == 'k:' then fields[#fields + 1] = field end
end
if #fields == 0 then return 0 end
return redis.call('HDEL', meta, unpack(fields))
