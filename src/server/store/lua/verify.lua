-- KEYS: names. ARGV: session prefix, then sessions. Returns the sessions that no longer hold
-- their name: gone (another node put back an earlier holder of the name after Redis lost
-- data), or the name is another's now.
local lost = {}
for i = 2, #ARGV do
  local key = redis.call('HGET', ARGV[1] .. ARGV[i], 'key')
  if not key or redis.call('HGET', KEYS[1], key) ~= ARGV[i] then lost[#lost + 1] = ARGV[i] end
end
return lost
