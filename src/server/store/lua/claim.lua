-- KEYS: names, my session. ARGV: name key, session, conn, node, name, old key or "",
-- node prefix, session prefix. Returns 1, or 0 when a live session holds the name.
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then
  local s = ARGV[8] .. owner
  local held = redis.call('HMGET', s, 'conn', 'node')
  if held[1] then
    if held[1] == '' or redis.call('EXISTS', ARGV[7] .. held[2]) == 1 then
      return 0
    end
  end
  redis.call('DEL', s)
end
if ARGV[6] ~= '' and ARGV[6] ~= ARGV[1] and redis.call('HGET', KEYS[1], ARGV[6]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[6])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'name', ARGV[5], 'key', ARGV[1], 'conn', ARGV[3], 'node', ARGV[4])
redis.call('PERSIST', KEYS[2])
return 1
