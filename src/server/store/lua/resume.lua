-- KEYS: session, names. ARGV: conn, node, session. Returns the name or nil.
local s = redis.call('HMGET', KEYS[1], 'name', 'key')
if not s[1] or redis.call('HGET', KEYS[2], s[2]) ~= ARGV[3] then
  return false
end
redis.call('HSET', KEYS[1], 'conn', ARGV[1], 'node', ARGV[2])
redis.call('PERSIST', KEYS[1])
return s[1]
