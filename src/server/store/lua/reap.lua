-- KEYS: members, owners. ARGV: owner prefix of the dead node, channel. Announces
-- 'l<name>' for each member removed (see bus/payload.rs).
local owners = redis.call('HGETALL', KEYS[2])
local n = 0
for i = 1, #owners, 2 do
  local sid, owner = owners[i], owners[i + 1]
  if string.sub(owner, 1, #ARGV[1]) == ARGV[1] then
    local name = redis.call('HGET', KEYS[1], sid)
    redis.call('HDEL', KEYS[1], sid)
    redis.call('HDEL', KEYS[2], sid)
    if name then
      redis.call('PUBLISH', ARGV[2], 'l' .. name)
    end
    n = n + 1
  end
end
return n
