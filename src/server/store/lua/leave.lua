-- KEYS: members, owners, names. ARGV: session, owner, channel. The owner leaves; the member
-- leaves (announced as 'l<name>', see bus/payload.rs) with its last owner.
local owners = redis.call('HGET', KEYS[2], ARGV[1])
if not owners or not owners_has(owners, ARGV[2]) then return 0 end
local rest = owners_del(owners, ARGV[2])
if rest ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], rest)
  return 0
end
local stored = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if stored then
  names_del(KEYS[3], stored, ARGV[1])
  redis.call('PUBLISH', ARGV[3], 'l' .. member_name(stored))
end
return 1
