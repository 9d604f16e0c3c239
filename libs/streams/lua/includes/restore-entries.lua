--[[
restore-entries.lua: the body of restore-tail-3.lua and restore-tail-2.lua (see their headers):
put stream entries back with their original ids, fix meta.last and meta.trimmed, drop the clock
map and mark the compaction task. The caller puts a new task on the queue (in the same script on
a standalone Redis; in a second command on a cluster, where the queue lives in another slot).

restoreEntries(stream, meta)  reads ARGV as the headers say; returns
  { added, present, rebuilt, newTask, highest }: newTask 1 when this call marked the task, whose
  token is `highest` (the highest restored id)
]]
--- @include "stream-id"

local function restoreEntries(stream, meta)
  local doc, above, reached, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

  -- The id XADD must exceed: the stream's last generated id (trimmed or deleted entries count).
  local top = '0-0'
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then top = info[i + 1] end
    end
  end

  for _, f in ipairs(redis.call('HKEYS', meta)) do
    if f == 'clocks' or string.sub(f, 1, 2) == 'k:' then redis.call('HDEL', meta, f) end
  end

  local missing = {}
  local present = 0
  local inOrder = true
  for i = 5, #ARGV, 2 do
    local id = ARGV[i]
    if idLess(above, id) then
      if #redis.call('XRANGE', stream, id, id) > 0 then
        present = present + 1
      else
        missing[#missing + 1] = i
        if not idLess(top, id) then inOrder = false end
      end
    end
  end
  if #missing == 0 then return { 0, present, 0, 0, '' } end

  local rebuilt = 0
  if inOrder then
    for _, i in ipairs(missing) do
      redis.call('XADD', stream, ARGV[i], 'u', ARGV[i + 1], 'o', origin)
    end
  else
    -- Ids below the stream's last: rewrite the stream as the union of both, ascending.
    rebuilt = 1
    local existing = redis.call('XRANGE', stream, '-', '+')
    redis.call('DEL', stream)
    local e, m = 1, 1
    while e <= #existing or m <= #missing do
      local old = existing[e]
      local i = missing[m]
      if old and (not i or idLess(old[1], ARGV[i])) then
        redis.call('XADD', stream, old[1], unpack(old[2]))
        e = e + 1
      else
        redis.call('XADD', stream, ARGV[i], 'u', ARGV[i + 1], 'o', origin)
        m = m + 1
      end
    end
  end

  local highest = ARGV[missing[#missing]]
  local last = redis.call('HGET', meta, 'last') or '0-0'
  if idLess(last, reached) then last = reached end
  if idLess(last, highest) then last = highest end
  redis.call('HSET', meta, 'last', last)
  -- Restored entries come from a backup, not from a writer waiting for replicas: readers bounded
  -- by meta.visible (REDIS_WAIT_REPLICAS) see them at once.
  local visible = redis.call('HGET', meta, 'visible')
  if visible and idLess(visible, last) then redis.call('HSET', meta, 'visible', last) end

  local trimmed = redis.call('HGET', meta, 'trimmed')
  if trimmed then
    local ams, aseq = parseId(above)
    local floor = string.format('%d-%d', ams, aseq + 1)
    if idLess(floor, trimmed) then redis.call('HSET', meta, 'trimmed', floor) end
  end

  redis.call('PERSIST', meta)

  local newTask = 0
  if redis.call('HSETNX', meta, 'task', highest) == 1 then newTask = 1 end
  return { #missing, present, rebuilt, newTask, highest }
end
