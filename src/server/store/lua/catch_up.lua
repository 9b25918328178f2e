-- KEYS: meta. ARGV: epoch, seq delivered. Raises the room's seq to what a node
-- delivered, when Redis lost the messages in between. Returns 1 if it did.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if meta[1] == ARGV[1] and tonumber(meta[2] or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'seq', ARGV[2])
  return 1
end
return 0
