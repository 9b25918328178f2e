-- KEYS: members, owners. ARGV: session, owner, name, channel. Announces
-- 'r<old name>\n<name>' (see bus/payload.rs) unless the owner does not hold the member, or
-- another owner (tab) of the session renamed it first.
local owners = redis.call('HGET', KEYS[2], ARGV[1])
if not owners or not owners_has(owners, ARGV[2]) then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if old then redis.call('PUBLISH', ARGV[4], 'r' .. old .. '\n' .. ARGV[3]) end
return 1
