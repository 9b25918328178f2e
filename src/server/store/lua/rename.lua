-- KEYS: members, owners, names. ARGV: session, owner, member ('<order key>\n<name>'), channel.
-- Announces 'r<old name>\n<name>' (see bus/payload.rs) unless the owner does not hold the
-- member, or another owner (tab) of the session renamed it first.
local owners = redis.call('HGET', KEYS[2], ARGV[1])
if not owners or not owners_has(owners, ARGV[2]) then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
names_del(KEYS[3], old, ARGV[1])
names_add(KEYS[3], ARGV[3], ARGV[1])
if old then
  redis.call('PUBLISH', ARGV[4], 'r' .. member_name(old) .. '\n' .. member_name(ARGV[3]))
end
return 1
