-- KEYS: session, names. ARGV: owner, session. Adds the owner to the session's (beside its
-- other connections). Returns {the name, since when it has held it (ms)}, or nil when the
-- session is gone.
local s = redis.call('HMGET', KEYS[1], 'name', 'key', 'since')
if not s[1] or redis.call('HGET', KEYS[2], s[2]) ~= ARGV[2] then
  return false
end
local owners = owners_add(session_owners(KEYS[1]), ARGV[1])
redis.call('HDEL', KEYS[1], 'conn', 'node')
redis.call('HSET', KEYS[1], 'owners', owners)
redis.call('PERSIST', KEYS[1])
return {s[1], tonumber(s[3]) or 0}
