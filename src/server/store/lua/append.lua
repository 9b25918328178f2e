-- KEYS: meta, history, ids (hash client_id → seq), id order (list). ARGV: channel,
-- epoch if new, the message's body (opaque: Rust wrote it; see bus/payload.rs), history
-- size, client_id or "", dedup window, room ttl ms. Stores and announces
-- 'm<seq> <epoch> <body>'. Returns {seq,
-- duplicate (1/0)}. The room's data expires after the ttl without a message or join;
-- it then starts again in a new epoch.
if ARGV[5] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[5])
  if seen then return {tonumber(seen), 1} end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = 'm' .. seq .. ' ' .. epoch .. ' ' .. ARGV[3]
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], frame)
  redis.call('LTRIM', KEYS[2], -keep, -1)
end
local window = tonumber(ARGV[6])
if ARGV[5] ~= '' and window > 0 then
  redis.call('HSET', KEYS[3], ARGV[5], seq)
  if redis.call('RPUSH', KEYS[4], ARGV[5]) > window then
    redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
  end
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
redis.call('PUBLISH', ARGV[1], frame)
return {seq, 0}
