--[[
awareness-set-1.lua: record the awareness states a client connection sent, and relay to every node
serving the document only the entries that are news.

y-websocket clients re-broadcast every awareness change they receive, so a node sees echoes of
other clients' states. An entry is news when its clock is higher than the stored one (or nothing
is stored), or when it is a removal (state "null") at the stored clock sent by the record's owner.
Echoes are dropped here: they neither take over a record nor get relayed (which would cost
O(clients^2) messages per change).

KEYS[1]  awareness hash             <p>:v1:{doc}:a    field = client id, value = record (below)
ARGV[1]  doorbell channel           <p>:v1:{doc}:c
ARGV[2]  origin "<nodeId>~<token>/<connectionId>" of the sending connection: the owner of what it
         announces
ARGV[3]  TTL of the whole hash in ms (renewed on every call; cleans up after every node died)
ARGV[4..] triples: client id, clock, state JSON ("null" = client left)

record   "<clock> <owner origin> <updatedAtMs>\n<state JSON>"   (updatedAtMs: Redis time; read with
         parseRecord, includes/awareness-record.lua)
relay    SPUBLISH "a <origin>\n<awareness update of the accepted entries>" if any was accepted
returns  flat list of accepted entries: client id, clock, state ("null" for removals)
]]
--- @include "redis-time"
--- @include "varuint"
--- @include "awareness-record"

local hash, channel, origin = KEYS[1], ARGV[1], ARGV[2]
local nowMs = redisTimeMs()

local accepted = {}
local relay = {}
for i = 4, #ARGV, 3 do
  local client, clock, state = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', hash, client)
  local news = false
  if not current then
    news = true
  else
    local currentClock, owner = parseRecord(current)
    currentClock = tonumber(currentClock)
    news = clock > currentClock or (clock == currentClock and state == 'null' and owner == origin)
  end
  if news then
    if state == 'null' then
      redis.call('HDEL', hash, client)
    else
      redis.call('HSET', hash, client, string.format('%d %s %d\n', clock, origin, nowMs) .. state)
    end
    accepted[#accepted + 1] = client
    accepted[#accepted + 1] = clock
    accepted[#accepted + 1] = state
    relay[#relay + 1] = varuint(tonumber(client)) .. varuint(clock) .. varuint(#state) .. state
  end
end
if redis.call('EXISTS', hash) == 1 then redis.call('PEXPIRE', hash, ARGV[3]) end
if #relay > 0 then
  redis.call('SPUBLISH', channel, 'a ' .. origin .. '\n' .. varuint(#relay) .. table.concat(relay))
end
return accepted
