--[[
restore-tail-2.lua: restore-tail-3.lua for a Redis Cluster (the queue lives in another slot): the
same, without the enqueue; when newTask is 1 the caller adds the task (token = the 5th reply
element, the highest restored id) to the queue, and a crash in between is repaired by the task
reconciler.

Like restore-tail-3.lua, it puts entries of a document's stream tail back into Redis with their original
ids (restore from a backup), make sure the document has a compaction task, and drop the clock map
so that the next append seeds it from storage + stream. Idempotent: entries already in the stream
are skipped, so running it twice restores the same.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  document name (written into the task)
ARGV[2]  stored watermark now ("0-0" for none): entries with ids <= it are in storage, skipped
ARGV[3]  the last id the document had reached when the tail was read ("0-0" for none): meta.last
         becomes at least this, so new entries get higher ids
ARGV[4]  origin written on the entries ("<nodeId>/<connectionId>" form)
ARGV[5..] pairs: id, update, ids ascending

returns  { added, present, rebuilt, newTask, highest }
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
--- @include "restore-entries"

return restoreEntries(KEYS[1], KEYS[2])
