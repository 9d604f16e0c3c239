--[[
varuint.lua: lib0's variable-length unsigned integer (7 bits a byte, lowest first, high bit set on
every byte but the last), the way awareness updates encode counts, client ids, clocks and lengths.

varuint(n)  the bytes of n (n >= 0, an integer)
]]
local function varuint(n)
  local out = {}
  while n > 127 do
    out[#out + 1] = string.char(128 + n % 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
