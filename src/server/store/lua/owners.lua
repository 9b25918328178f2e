-- Who holds a session, or a session's place in a room: a list of owners "<node> <conn>",
-- joined by ','. A browser's tabs are one session held by several connections. And how a
-- room keeps its members' names.
local function owners_has(list, owner)
  return string.find(',' .. list .. ',', ',' .. owner .. ',', 1, true) ~= nil
end

local function owners_add(list, owner)
  if not list or list == '' then return owner end
  if owners_has(list, owner) then return list end
  return list .. ',' .. owner
end

-- The owners for which keep(owner) is true.
local function owners_keep(list, keep)
  local out = {}
  for owner in string.gmatch(list or '', '[^,]+') do
    if keep(owner) then out[#out + 1] = owner end
  end
  return table.concat(out, ',')
end

local function owners_del(list, owner)
  return owners_keep(list, function(o) return o ~= owner end)
end

-- Whether the owner's node is alive (its heartbeat key exists under node prefix `prefix`).
local function owner_alive(prefix, owner)
  return redis.call('EXISTS', prefix .. string.match(owner, '^[^ ]*')) == 1
end

-- A session's owners; a session written by a node from before the lists has one, in the
-- fields `node` and `conn` (an empty `conn`: none).
local function session_owners(s)
  local f = redis.call('HMGET', s, 'owners', 'node', 'conn')
  if f[1] then return f[1] end
  if f[3] and f[3] ~= '' then return f[2] .. ' ' .. f[3] end
  return ''
end

-- A room member as the room's `members` hash keeps it: '<order key>\n<name>' (a node before
-- the sorted names kept the name alone). Its name:
local function member_name(stored)
  return string.match(stored, '\n(.*)$') or stored
end

-- The room's sorted names (`names`, a sorted set of score 0, read by ZRANGEBYLEX) hold each
-- member as '<order key>\n<name>\n<session>'.
local function names_add(names, stored, session)
  redis.call('ZADD', names, 0, stored .. '\n' .. session)
end

local function names_del(names, stored, session)
  if stored then redis.call('ZREM', names, stored .. '\n' .. session) end
end

-- Now on Redis's clock, in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
