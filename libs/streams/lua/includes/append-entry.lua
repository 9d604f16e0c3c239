--[[
append-entry.lua: the body of append-3.lua and append-2.lua (see their headers): check the
update's clock claims against the document's clock map, append it with an id above everything the
document had, ring the doorbell (unless the caller rings it after WAIT, see replicated-1.lua for
meta.visible), and mark the compaction
task in the meta hash. The caller puts a new task on the queue: in the same script on a standalone
Redis (append-3.lua), in a second command on a cluster, where the queue lives in another slot
(append-2.lua; a reconciler repairs a crash between the two).

appendEntry(stream, meta)  reads ARGV as the headers say; returns the script's reply:
  { id, prev, newTask } with newTask 1 when this call marked the task, or { "seed" },
  or { "clocks", client, next, ... }
]]
--- @include "redis-time"
--- @include "stream-id"

local function appendEntry(stream, meta)
  local update, origin, channel, inlineLimit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
  local ring = ARGV[7] == '1'
  local claims = tonumber(ARGV[8] or '0')
  if claims > 0 then
    if redis.call('HEXISTS', meta, 'clocks') == 0 then return { 'seed' } end
    local known = { 'clocks' }
    local mismatch = false
    for i = 0, claims - 1 do
      local client, from = ARGV[9 + 3 * i], ARGV[10 + 3 * i]
      local next = redis.call('HGET', meta, 'k:' .. client) or '0'
      if next ~= from then mismatch = true end
      known[#known + 1] = client
      known[#known + 1] = next
    end
    if mismatch then return known end
  end

  local prev = redis.call('HGET', meta, 'last') or '0-0'
  -- floor = max(prev, ARGV[6])
  local floor = prev
  if idLess(prev, ARGV[6]) then floor = ARGV[6] end
  local floorMs, floorSeq = parseId(floor)

  local id
  local nowMs = redisTimeMs()
  if nowMs > floorMs then
    -- "*" is above the stream's own last id and, here, above the floor.
    id = redis.call('XADD', stream, '*', 'u', update, 'o', origin)
  else
    id = redis.call('XADD', stream, string.format('%d-%d', floorMs, floorSeq + 1), 'u', update, 'o', origin)
  end

  redis.call('HSET', meta, 'last', id)
  -- After WAIT the caller raises meta.visible to this id (replicated-1.lua); until then readers
  -- bounded by it do not see the entry. The first such append starts the bound where the stream
  -- stood: everything before it was appended without WAIT, or confirmed.
  if not ring and redis.call('HEXISTS', meta, 'visible') == 0 then
    redis.call('HSET', meta, 'visible', prev)
  end
  for i = 0, claims - 1 do
    redis.call('HSET', meta, 'k:' .. ARGV[9 + 3 * i], ARGV[11 + 3 * i])
  end
  redis.call('PERSIST', meta)

  local newTask = 0
  if redis.call('HSETNX', meta, 'task', id) == 1 then newTask = 1 end

  if ring then
    local header = 'u ' .. id .. ' ' .. prev .. ' ' .. origin
    if #update <= inlineLimit then
      redis.call('SPUBLISH', channel, header .. ' i\n' .. update)
    else
      redis.call('SPUBLISH', channel, header .. ' r\n')
    end
  end
  return { id, prev, newTask }
end
