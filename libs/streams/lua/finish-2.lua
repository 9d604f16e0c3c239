--[[
finish-2.lua: after a worker stored a document up to watermark X, trim the compacted entries that are
older than the minimum message lifetime and, if nothing is left, delete the idle stream and clear
its task. Runs on the document's slot, so it is atomic with append-3.lua: an append either happens
before (the stream has entries after X: "dirty") or after (it finds no task and creates one). There
is no moment when a document has entries but no task.

KEYS[1]  document stream            <p>:v1:{doc}:s
KEYS[2]  document meta hash         <p>:v1:{doc}:m
ARGV[1]  task token the worker holds (meta.task must still equal it)
ARGV[2]  X: storage now contains every entry with id <= X ("0-0" if nothing stored)
ARGV[3]  minimum message lifetime in ms: younger entries stay for lagging readers
ARGV[4]  TTL in ms of the meta hash once the stream is gone (keeps last/trimmed as a tombstone)

returns  { "stale" }            the task token changed: another delivery owns the document
         { "done" }             stream deleted, task cleared
         { "wait", oldestId }   everything stored, but entries younger than the lifetime remain
         { "dirty" }            entries after X exist: compact again
Trimming sets meta.trimmed = exclusive bound: every entry with a smaller id is gone.
]]
--- @include "redis-time"
--- @include "stream-id"

local stream, meta = KEYS[1], KEYS[2]
local token, x, lifetime, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

if redis.call('HGET', meta, 'task') ~= token then return { 'stale' } end

local nowMs = redisTimeMs()
local xms, xseq = parseId(x)
-- Trim below min(X + 1, now - lifetime): stored and old enough.
local threshold = string.format('%d-%d', xms, xseq + 1)
local cutoff = nowMs - lifetime
if cutoff <= xms then threshold = string.format('%d-0', math.max(cutoff, 0)) end
if x ~= '0-0' then
  redis.call('XTRIM', stream, 'MINID', threshold)
  local trimmed = redis.call('HGET', meta, 'trimmed') or '0-0'
  if idLess(trimmed, threshold) then redis.call('HSET', meta, 'trimmed', threshold) end
end

local last = redis.call('HGET', meta, 'last') or '0-0'
if last ~= x and idLess(x, last) then return { 'dirty' } end
if redis.call('XLEN', stream) == 0 then
  redis.call('DEL', stream)
  redis.call('HDEL', meta, 'task')
  redis.call('PEXPIRE', meta, ttl)
  return { 'done' }
end
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
return { 'wait', oldest[1][1] }
