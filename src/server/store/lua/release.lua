-- KEYS: session, names. ARGV: conn, keep (1/0), ttl ms, session.
if redis.call('HGET', KEYS[1], 'conn') ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'conn', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  local key = redis.call('HGET', KEYS[1], 'key')
  if key and redis.call('HGET', KEYS[2], key) == ARGV[4] then redis.call('HDEL', KEYS[2], key) end
  redis.call('DEL', KEYS[1])
end
return 1
