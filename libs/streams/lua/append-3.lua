--[[
append-3.lua: append one Yjs update to a document's stream, ring the doorbell and make sure the
document has a compaction task, atomically.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
KEYS[3]  task queue shard stream    <p>:v1:{qN}:tasks
ARGV[1]  update (Yjs v1 bytes, already validated by the node)
ARGV[2]  origin: "<nodeId>/<connectionId>" (lets nodes skip the sender when fanning out)
ARGV[3]  doorbell channel           <p>:v1:{doc}:c
ARGV[4]  inline limit: the doorbell carries the update when #ARGV[1] <= this
ARGV[5]  document name (written into the task)
ARGV[6]  floor: the new id must be above it ("0-0" for none); the caller passes the highest id it
         knows the document reached, e.g. the watermark its storage read returned
ARGV[7]  number of clock claims n (0 when the update holds no structs)
ARGV[8..] n triples: client, from, to: the update holds the clocks from..to-1 of the client and
         nothing else of it (from "-1": the caller needs the document's clocks, the claim fails)

returns  { id, prev, newTask }  id of the new entry, id of the entry before it ("0-0" if none),
         1 if this call created the compaction task, else 0
         { "seed" }             the document's clock map is missing: seed it (seed-clocks-1.lua)
         { "clocks", client, next, ... }  some claim's `from` is not the client's next clock:
                                nothing was appended; `next` of every claimed client follows

Clock map (meta fields "k:<client>" = the client's next clock, "clocks" = "1" once seeded). Yjs
names content by client and clock, and applying an update skips ids the document has (the first
content wins) while merging updates does not: so a document's stream never holds one id twice.
Each client's clocks in storage + stream are exactly 0..next-1; an update is appended only when,
for each of its clients, it starts at `next` (the caller strips known clocks and retries).
Clocks are compared and stored as the caller's decimal strings (Lua numbers print with 14 digits).

Doorbell (SPUBLISH on ARGV[3]):  "u <id> <prev> <origin> <i|r>\n<update if i>"
  i = the update follows inline, r = read it with XRANGE.

Entry ids stay above everything the document ever had, even if the Redis clock went backwards:
above meta.last (which survives deletion of an idle stream as a tombstone with a TTL) and above the
caller's floor (which covers a lost or expired meta hash: readers skip ids <= the stored watermark).
]]
--- @include "redis-time"
--- @include "stream-id"

local stream, meta, queue = KEYS[1], KEYS[2], KEYS[3]
local update, origin, channel, inlineLimit, doc = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

local claims = tonumber(ARGV[7] or '0')
if claims > 0 then
  if redis.call('HEXISTS', meta, 'clocks') == 0 then return { 'seed' } end
  local known = { 'clocks' }
  local mismatch = false
  for i = 0, claims - 1 do
    local client, from = ARGV[8 + 3 * i], ARGV[9 + 3 * i]
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
for i = 0, claims - 1 do
  redis.call('HSET', meta, 'k:' .. ARGV[8 + 3 * i], ARGV[10 + 3 * i])
end
redis.call('PERSIST', meta)

local newTask = 0
if redis.call('HSETNX', meta, 'task', id) == 1 then
  redis.call('XADD', queue, '*', 'd', doc, 't', id)
  newTask = 1
end

local header = 'u ' .. id .. ' ' .. prev .. ' ' .. origin
if #update <= inlineLimit then
  redis.call('SPUBLISH', channel, header .. ' i\n' .. update)
else
  redis.call('SPUBLISH', channel, header .. ' r\n')
end

return { id, prev, newTask }
