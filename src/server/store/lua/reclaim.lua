-- KEYS: names, my session. ARGV: name key, session, name, since (ms), this node's owners of the
-- session (',' joined), node prefix, session prefix. After Redis lost data (a restart without
-- it, a failover that lost writes), puts back a session this node still serves and the name it
-- held. If another live session took the name meanwhile, the one that held it first keeps it
-- (the lower session id on a tie): a loser here returns 0; a loser elsewhere loses its session
-- (its node finds out and ends its connections). Returns 1 when this session holds the name.
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  local s = ARGV[7] .. holder
  if redis.call('EXISTS', s) == 1 then
    local owners = session_owners(s)
    local live = owners == '' or
      owners_keep(owners, function(o) return owner_alive(ARGV[6], o) end) ~= ''
    local theirs = tonumber(redis.call('HGET', s, 'since')) or 0
    local mine = tonumber(ARGV[4])
    if live and (theirs < mine or (theirs == mine and holder < ARGV[2])) then return 0 end
  end
  redis.call('DEL', s)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local owners = session_owners(KEYS[2])
for owner in string.gmatch(ARGV[5], '[^,]+') do owners = owners_add(owners, owner) end
redis.call('HDEL', KEYS[2], 'conn', 'node')
redis.call('HSET', KEYS[2], 'name', ARGV[3], 'key', ARGV[1], 'owners', owners, 'since', ARGV[4])
redis.call('PERSIST', KEYS[2])
return 1
