--[[
read-2.lua: read a document's stream tail after a watermark, together with the trim marker, in one
atomic step so a reader can tell whether entries it needs were trimmed meanwhile.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  exclusive lower bound (a stream id; "0-0" for everything)
ARGV[2]  maximum number of entries to return
ARGV[3]  "1": read only up to meta.visible (REDIS_WAIT_REPLICAS: entries no replica confirmed yet
         stay unseen, see replicated-1.lua); "0": up to the end

returns  { trimmed, last, entries, end }
         trimmed: every entry with an id below this is gone ("0-0" if nothing was ever trimmed)
         last:    id of the last entry ever appended ("0-0" if none); when bounded, the last
                  visible one: the entries after it are not confirmed yet
         entries: XRANGE reply, oldest first: { {id, {field, value, ...}}, ... }
         end:     "+" (unbounded) or the bound, for the caller's later pages
         pending: 1 when bounded and entries after the bound exist, else 0
]]
--- @include "stream-id"

local trimmed = redis.call('HGET', KEYS[2], 'trimmed') or '0-0'
local last = redis.call('HGET', KEYS[2], 'last') or '0-0'
local bound = '+'
local pending = 0
if ARGV[3] == '1' then
  local visible = redis.call('HGET', KEYS[2], 'visible')
  if visible then
    bound = visible
    if idLess(visible, last) then
      last = visible
      pending = 1
    end
  end
end
local entries = {}
if bound == '+' or idLess(ARGV[1], bound) then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], bound, 'COUNT', ARGV[2])
end
return { trimmed, last, entries, bound, pending }
