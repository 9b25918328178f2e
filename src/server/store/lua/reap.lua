-- KEYS: members, owners, names. ARGV: owner prefix of the dead node, channel. Its connections stop
-- holding their members; a member left without any is removed and announced as 'l<name>'
-- (see bus/payload.rs). Returns how many were removed.
local owners = redis.call('HGETALL', KEYS[2])
local n = 0
local function alive(owner) return string.sub(owner, 1, #ARGV[1]) ~= ARGV[1] end
for i = 1, #owners, 2 do
  local sid, list = owners[i], owners[i + 1]
  local rest = owners_keep(list, alive)
  if rest == '' then
    local stored = redis.call('HGET', KEYS[1], sid)
    redis.call('HDEL', KEYS[1], sid)
    redis.call('HDEL', KEYS[2], sid)
    if stored then
      names_del(KEYS[3], stored, sid)
      redis.call('PUBLISH', ARGV[2], 'l' .. member_name(stored))
    end
    n = n + 1
  elseif rest ~= list then
    redis.call('HSET', KEYS[2], sid, rest)
  end
end
return n
