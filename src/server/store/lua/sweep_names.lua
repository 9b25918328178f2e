-- KEYS: names. ARGV: cursor, batch size, session prefix, node prefix, session ttl
-- ms. One step through the names: a name whose session is gone is freed; a session's
-- connections on dead nodes stop holding it, and one left without any waits to be resumed
-- for the ttl, like after a dropped link (a later step frees its name). Returns
-- {next cursor, names freed}.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local kv, freed = page[2], 0
for i = 1, #kv, 2 do
  local s = ARGV[3] .. kv[i + 1]
  if redis.call('EXISTS', s) == 0 then
    redis.call('HDEL', KEYS[1], kv[i])
    freed = freed + 1
  else
    local owners = session_owners(s)
    if owners ~= '' then
      local live = owners_keep(owners, function(o) return owner_alive(ARGV[4], o) end)
      if live ~= owners then
        redis.call('HDEL', s, 'conn', 'node')
        redis.call('HSET', s, 'owners', live)
        if live == '' then redis.call('PEXPIRE', s, ARGV[5]) end
      end
    end
  end
end
return {page[1], freed}
