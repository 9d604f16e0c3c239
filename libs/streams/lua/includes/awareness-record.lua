--[[
awareness-record.lua: one client's entry in a document's awareness hash <p>:v1:{doc}:a, written by
awareness-set-1.lua (and parsed the same way by awareness-store.ts):

  "<clock> <owner origin> <updatedAtMs>\n<state JSON>"
  owner origin = "<nodeId>~<token>/<connectionId>" of the connection that announced the state

parseRecord(record)  clock, owner origin, owner's node id, updatedAtMs (strings); nil if malformed
]]
local function parseRecord(record)
  return string.match(record, '^(%d+) (([^~ ]+)%S*) (%d+)\n')
end
