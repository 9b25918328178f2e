-- KEYS: meta, history, members, owners, ids, id order. ARGV: session, owner, name,
-- channel, joined notice (opaque), may create (1/0), room ttl ms. A session already in
-- the room under another name announces 'r<old name>\n<name>' (see bus/payload.rs).
-- Returns {names, history, epoch, seq, 1 if the room was opened (0 if not, -1 if it may
-- not be)}.
local fresh = redis.call('EXISTS', KEYS[1], KEYS[3]) == 0
if fresh and ARGV[6] ~= '1' then return {{}, {}, '', '0', -1} end
for i = 1, 6 do
  if i ~= 3 and i ~= 4 then redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
end
local prev = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
if not prev then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
elseif prev ~= ARGV[3] then
  redis.call('PUBLISH', ARGV[4], 'r' .. prev .. '\n' .. ARGV[3])
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {redis.call('HVALS', KEYS[3]), redis.call('LRANGE', KEYS[2], 0, -1), meta[1] or '', meta[2] or '0', fresh and 1 or 0}
