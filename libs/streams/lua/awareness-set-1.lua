--[[
awareness-set-1.lua: record the awareness states a client connection sent, and relay to every node
serving the document only the entries that are news from the client id's owner.

Presence belongs to its connection (DESIGN.md, invariant 7): a client id is set, changed and
removed only by the connection that first set it. Another connection may take an id over (with a
state, never a removal) only when it carries the same token subject, or when the owner stopped
renewing it (y-protocols renews every 15 s, so that owner is gone: a reconnect whose old socket
the server has not noticed yet).
y-websocket clients re-broadcast every awareness change they receive, so a node sees echoes of
other clients' states: an entry from another connection at or below the stored clock is an echo
and is ignored; above it, it is a spoof and is counted.

An owner's entry is news when its clock is higher than the stored one, or when it is a removal
(state "null") at the stored clock. A removal of an id nobody holds is nothing.

KEYS[1]  awareness hash             <p>:v1:{doc}:a    field = client id, value = record (below)
ARGV[1]  doorbell channel           <p>:v1:{doc}:c
ARGV[2]  origin "<nodeId>~<token>/<connectionId>" of the sending connection
ARGV[3]  TTL of the whole hash in ms (renewed on every call; cleans up after every node died)
ARGV[4]  subject tag of the connection's token ("-" for none): same tag, same user
ARGV[5]  stale after ms: a record not renewed for longer may be taken over
ARGV[6]  how many client ids the connection may still take (its limit minus those it holds)
ARGV[7..] triples: client id, clock, state JSON ("null" = client left)

record   "<clock> <owner origin> <updatedAtMs> <subject tag>\n<state JSON>"   (Redis time; read
         with parseRecord, includes/awareness-record.lua)
relay    SPUBLISH "a <origin>\n<awareness update of the accepted entries>" if any was accepted
returns  { spoofed, overLimit, client id, clock, state, ... }: counts of entries refused because
         another connection owns the id, and because the connection holds too many ids; then the
         accepted entries ("null" for removals)
]]
--- @include "redis-time"
--- @include "varuint"
--- @include "awareness-record"

local hash, channel, origin = KEYS[1], ARGV[1], ARGV[2]
local subject, staleMs, mayTake = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local nowMs = redisTimeMs()

local out = { 0, 0 }
local relay = {}
for i = 7, #ARGV, 3 do
  local client, clock, state = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', hash, client)
  local news = false
  local currentClock, owner, _, updated, tag
  if current then currentClock, owner, _, updated, tag = parseRecord(current) end
  if not currentClock then
    -- Nobody holds it (or the record is unreadable): a new id for this connection.
    if state ~= 'null' then
      if mayTake > 0 then
        mayTake = mayTake - 1
        news = true
      else
        out[2] = out[2] + 1
      end
    end
  else
    currentClock = tonumber(currentClock)
    local owned = owner == origin
    if not owned and clock > currentClock then
      -- Only a state can take an id over; a removal comes from the owner alone.
      local mayOwn = state ~= 'null'
        and ((subject ~= '-' and tag == subject) or nowMs - tonumber(updated) > staleMs)
      if mayOwn and mayTake > 0 then
        mayTake = mayTake - 1
        owned = true
      elseif mayOwn then
        out[2] = out[2] + 1
      else
        out[1] = out[1] + 1
      end
    end
    news = owned and (clock > currentClock or (clock == currentClock and state == 'null'))
  end
  if news then
    if state == 'null' then
      redis.call('HDEL', hash, client)
    else
      local record = string.format('%d %s %d %s\n', clock, origin, nowMs, subject)
      redis.call('HSET', hash, client, record .. state)
    end
    out[#out + 1] = client
    out[#out + 1] = clock
    out[#out + 1] = state
    relay[#relay + 1] = varuint(tonumber(client)) .. varuint(clock) .. varuint(#state) .. state
  end
end
if redis.call('EXISTS', hash) == 1 then redis.call('PEXPIRE', hash, ARGV[3]) end
if #relay > 0 then
  redis.call('SPUBLISH', channel, 'a ' .. origin .. '\n' .. varuint(#relay) .. table.concat(relay))
end
return out
