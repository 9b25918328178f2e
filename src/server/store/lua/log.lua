-- Shared by the scripts that touch a room's messages (put in front of each; see keys.rs).
-- A room's history is a stream (`:log`) whose entry ids are `<seq>-0`, each entry one field
-- `m` holding the payload the channel carries ('m<seq> <epoch> <body>', see bus/payload.rs); `bytes`
-- in the room's meta hash counts their length. Nodes before the stream kept a list
-- (`:history`): `adopt` moves what such a node stored into the stream, once.

local function log_seq(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function adopt(list, log, meta)
  if redis.call('EXISTS', list) == 0 then return end
  local top = 0
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if last then top = log_seq(last[1]) end
  for _, frame in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local seq = tonumber(string.match(frame, '^m(%d+) '))
    if seq and seq > top then
      redis.call('XADD', log, seq .. '-0', 'm', frame)
      redis.call('HINCRBY', meta, 'bytes', #frame)
      top = seq
    end
  end
  redis.call('DEL', list)
end

-- The payloads of stream entries, in the order given.
local function payloads(entries)
  local out = {}
  for i, e in ipairs(entries) do out[i] = e[2][2] end
  return out
end

-- The newest `n` payloads, oldest first.
local function newest(log, n)
  if n <= 0 then return {} end
  local entries = redis.call('XREVRANGE', log, '+', '-', 'COUNT', n)
  local out = {}
  for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
  return out
end
