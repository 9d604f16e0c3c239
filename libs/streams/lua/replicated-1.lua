--[[
replicated-1.lua: with REDIS_WAIT_REPLICAS, mark a document's entries up to an id as confirmed by
the replicas, so readers bounded by meta.visible (read-2.lua) see them.

Redis replicates in order and WAIT confirms every write its connection made before it, so once a
WAIT that followed the write of entry X succeeded, every entry up to X is on the replicas; a
failover then keeps all that any reader saw. Until then a join, a gap fill or a compaction reads
the stream only up to meta.visible (an acknowledged append is one whose WAIT succeeded).

KEYS[1]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  "mark": record that the caller is about to WAIT for every entry so far (a write, so the
         caller's WAIT covers all of them), returns { last, visible }
         "raise": raise meta.visible to ARGV[2] (never lowers it), returns { visible }
ARGV[2]  with "raise": the id every entry up to which the replicas confirmed
]]
--- @include "stream-id"

local meta = KEYS[1]
if ARGV[1] == 'mark' then
  local last = redis.call('HGET', meta, 'last') or '0-0'
  local visible = redis.call('HGET', meta, 'visible') or '0-0'
  if idLess(visible, last) then redis.call('HSET', meta, 'confirming', last) end
  return { last, visible }
end
local visible = redis.call('HGET', meta, 'visible')
if not visible or idLess(visible, ARGV[2]) then
  redis.call('HSET', meta, 'visible', ARGV[2])
  visible = ARGV[2]
end
return { visible }
