-- KEYS: names. ARGV: cursor, batch size, session prefix, node prefix, session ttl
-- ms. One step through the names: a name whose session is gone is freed; a session
-- still attached to a dead node is detached, so that its user may resume it for the
-- ttl like after a dropped link, and its name is freed by a later step. Returns
-- {next cursor, names freed}.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local kv, freed = page[2], 0
for i = 1, #kv, 2 do
  local s = ARGV[3] .. kv[i + 1]
  local held = redis.call('HMGET', s, 'conn', 'node')
  if not held[1] then
    redis.call('HDEL', KEYS[1], kv[i])
    freed = freed + 1
  elseif held[1] ~= '' and redis.call('EXISTS', ARGV[4] .. held[2]) == 0 then
    redis.call('HSET', s, 'conn', '')
    redis.call('PEXPIRE', s, ARGV[5])
  end
end
return {page[1], freed}
