--[[
read-2.lua: read a document's stream tail after a watermark, together with the trim marker, in one
atomic step so a reader can tell whether entries it needs were trimmed meanwhile.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  exclusive lower bound (a stream id; "0-0" for everything)
ARGV[2]  maximum number of entries to return

returns  { trimmed, last, entries }
         trimmed: every entry with an id below this is gone ("0-0" if nothing was ever trimmed)
         last:    id of the last entry ever appended ("0-0" if none)
         entries: XRANGE reply, oldest first: { {id, {field, value, ...}}, ... }
]]
local trimmed = redis.call('HGET', KEYS[2], 'trimmed') or '0-0'
local last = redis.call('HGET', KEYS[2], 'last') or '0-0'
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return { trimmed, last, entries }
