--[[
delete-doc-3.lua: delete a document's Redis state (DELETE /docs/<name>): its stream, awareness
and clock map. The meta hash stays as a tombstone with a TTL: `last` keeps new ids above every old
one (readers never mistake a new entry for one they saw) and `deleted` (Redis time, ms) tells a
worker that stored the document while it was being deleted to delete it again. Every node serving
the document is told to close its sockets, so that no client writes the old content back.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
KEYS[3]  awareness hash             <p>:v1:{doc}:a
ARGV[1]  doorbell channel           <p>:v1:{doc}:c
ARGV[2]  origin of the deletion (logs)
ARGV[3]  TTL in ms of the tombstone

relay    SPUBLISH "d <origin>\n" on the channel
returns  { existed, deletedAt }: existed 1 when the document had a stream or a meta hash
         holding more than a tombstone, deletedAt the Redis time (ms) written to `deleted`
]]
--- @include "redis-time"

local stream, meta, awareness = KEYS[1], KEYS[2], KEYS[3]
local existed = redis.call('EXISTS', stream)
if existed == 0 and redis.call('HEXISTS', meta, 'task') == 1 then existed = 1 end
local last = redis.call('HGET', meta, 'last')
local now = redisTimeMs()
redis.call('DEL', stream, awareness, meta)
if last then redis.call('HSET', meta, 'last', last) end
redis.call('HSET', meta, 'deleted', tostring(now))
redis.call('PEXPIRE', meta, ARGV[3])
redis.call('SPUBLISH', ARGV[1], 'd ' .. ARGV[2] .. '\n')
return { existed, now }
