-- KEYS: names, my session. ARGV: name key, session, owner, name, old key or "", node prefix,
-- session prefix. Returns since when the session has held the name (ms, Redis's clock), or 0
-- when a live session holds it: one held by a connection on a live node, or by none while its
-- ttl runs (it waits to be resumed).
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  local s = ARGV[7] .. holder
  if redis.call('EXISTS', s) == 1 then
    local owners = session_owners(s)
    if owners == '' then return 0 end
    local live = owners_keep(owners, function(o) return owner_alive(ARGV[6], o) end)
    if live ~= '' then return 0 end
  end
  redis.call('DEL', s)
end
if ARGV[5] ~= '' and ARGV[5] ~= ARGV[1] and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
-- The session's other connections (tabs) keep holding it, under the new name, which it holds
-- from now on (the same name said again keeps its time).
local owners = owners_add(session_owners(KEYS[2]), ARGV[3])
local held = redis.call('HMGET', KEYS[2], 'key', 'since')
local since = tonumber(held[2])
if held[1] ~= ARGV[1] or not since then since = now_ms() end
redis.call('HDEL', KEYS[2], 'conn', 'node')
redis.call('HSET', KEYS[2], 'name', ARGV[4], 'key', ARGV[1], 'owners', owners, 'since', since)
redis.call('PERSIST', KEYS[2])
return since
