--[[
awareness-record.lua: one client's entry in a document's awareness hash <p>:v1:{doc}:a, written by
awareness-set-1.lua (and parsed the same way by awareness-store.ts):

  "<clock> <owner origin> <updatedAtMs> <subject tag>\n<state JSON>"
  owner origin = "<nodeId>~<token>/<connectionId>" of the connection that owns the client id
  subject tag  = a hash of the owner's token subject, "-" for none

parseRecord(record)  clock, owner origin, owner's node id, updatedAtMs, subject tag (strings);
                     nil if malformed
]]
local function parseRecord(record)
  return string.match(record, '^(%d+) (([^~ ]+)%S*) (%d+) (%S+)\n')
end
