--[[
stream-id.lua: Redis stream ids "<ms>-<seq>".

parseId(id)    ms, seq as numbers (nil, nil when id is not "<digits>-<digits>")
idLess(a, b)   true when id a sorts before id b
]]
local function parseId(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function idLess(a, b)
  local ams, aseq = parseId(a)
  local bms, bseq = parseId(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
