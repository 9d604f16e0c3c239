--[[
restore-tail-3.lua: put entries of a document's stream tail back into Redis with their original
ids (restore from a backup), make sure the document has a compaction task, and drop the clock map
so that the next append seeds it from storage + stream. Idempotent: entries already in the stream
are skipped, so running it twice restores the same.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
KEYS[3]  task queue shard stream    <p>:v1:{qN}:tasks
ARGV[1]  document name (written into the task)
ARGV[2]  stored watermark now ("0-0" for none): entries with ids <= it are in storage, skipped
ARGV[3]  the last id the document had reached when the tail was read ("0-0" for none): meta.last
         becomes at least this, so new entries get higher ids
ARGV[4]  origin written on the entries ("<nodeId>/<connectionId>" form)
ARGV[5..] pairs: id, update, ids ascending

returns  { added, present, rebuilt, newTask }
         added:   entries written
         present: entries skipped because the stream holds their id already
         rebuilt: 1 when an entry's id was below the stream's last id (a stream that was not empty:
                  a forced restore), so the stream was rewritten as the union in id order, else 0
         newTask: 1 if this call created the compaction task (meta.task was empty), else 0

Meta. `last` = max(last, ARGV[3], highest entry id). `trimmed` (entries below it are gone) is
lowered to just above the stored watermark when it was higher: the restored entries after the
watermark are in the stream again, and a reader must not take the old marker for a hole. The clock
map ("clocks", "k:<client>") is removed on every call, even one that adds nothing: the caller may
have replaced the stored state, and append-3.lua refuses updates until seed-clocks-1.lua seeded
the map again from a read of storage + stream (dropping a map that was right costs one read).
No doorbell is rung: a restore runs before nodes serve the document (nodes that do fill gaps).
]]
--- @include "stream-id"

local stream, meta, queue = KEYS[1], KEYS[2], KEYS[3]
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
if #missing == 0 then return { 0, present, 0, 0 } end

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

local trimmed = redis.call('HGET', meta, 'trimmed')
if trimmed then
  local ams, aseq = parseId(above)
  local floor = string.format('%d-%d', ams, aseq + 1)
  if idLess(floor, trimmed) then redis.call('HSET', meta, 'trimmed', floor) end
end

redis.call('PERSIST', meta)

local newTask = 0
if redis.call('HSETNX', meta, 'task', highest) == 1 then
  redis.call('XADD', queue, '*', 'd', doc, 't', highest)
  newTask = 1
end
return { #missing, present, rebuilt, newTask }
