-- KEYS: members, owners. ARGV: session, owner, name, channel, joined notice.
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if owner and owner ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if not owner then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
