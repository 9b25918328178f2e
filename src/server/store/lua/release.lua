-- KEYS: session, names. ARGV: owner, keep (1/0), ttl ms, session. The owner lets go of the
-- session; with it the last, the session waits to be resumed for the ttl (keep), or ends and
-- frees its name. Returns 1, or 0 if the owner did not hold it.
local owners = session_owners(KEYS[1])
if not owners_has(owners, ARGV[1]) then return 0 end
local rest = owners_del(owners, ARGV[1])
redis.call('HDEL', KEYS[1], 'conn', 'node')
redis.call('HSET', KEYS[1], 'owners', rest)
if rest ~= '' then return 1 end
if ARGV[2] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  local key = redis.call('HGET', KEYS[1], 'key')
  if key and redis.call('HGET', KEYS[2], key) == ARGV[4] then redis.call('HDEL', KEYS[2], key) end
  redis.call('DEL', KEYS[1])
end
return 1
