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
ARGV[7]  "1": ring the doorbell here; "0": the caller rings it (after WAIT: nothing unreplicated
         becomes visible to other clients)
ARGV[8]  number of clock claims n (0 when the update holds no structs)
ARGV[9..] n triples: client, from, to: the update holds the clocks from..to-1 of the client and
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
--- @include "append-entry"

local reply = appendEntry(KEYS[1], KEYS[2])
if reply[3] == 1 then redis.call('XADD', KEYS[3], '*', 'd', ARGV[5], 't', reply[1]) end
return reply
