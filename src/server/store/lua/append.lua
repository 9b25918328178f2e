-- KEYS: meta, log (stream), ids (hash client_id → seq), id order (list), old history (list).
-- ARGV: channel, epoch if new, the message's body (opaque: Rust wrote it; see
-- bus/payload.rs), most messages kept, client_id or "", dedup window, room ttl ms, most bytes
-- kept. Stores and announces 'm<seq> <epoch> <body>'. Returns {seq, duplicate (1/0)}. The
-- room's data expires after the ttl without a message or join; it then starts again in a new
-- epoch.
if ARGV[5] ~= '' then
  local seen = redis.call('HGET', KEYS[3], ARGV[5])
  if seen then return {tonumber(seen), 1} end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- A new life of the room: whatever an earlier one left is not its history.
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2], KEYS[5])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'bytes', 0)
end
adopt(KEYS[5], KEYS[2], KEYS[1])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = 'm' .. seq .. ' ' .. epoch .. ' ' .. ARGV[3]
local keep, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[8])
if keep > 0 then
  redis.call('XADD', KEYS[2], seq .. '-0', 'm', frame)
  local len = redis.call('XLEN', KEYS[2])
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', #frame)
  -- The oldest go while there are too many or too many bytes; the newest always stays. At
  -- most 256 a message, so that a lowered bound shrinks a big room over several appends
  -- instead of holding Redis for one.
  local from, cut = '-', 0
  while len - cut > 1 and cut < 256 and (len - cut > keep or bytes > max_bytes) do
    local batch = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 16)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
      if len - cut <= 1 or cut >= 256 or (len - cut <= keep and bytes <= max_bytes) then break end
      bytes = bytes - #e[2][2]
      cut = cut + 1
      from = '(' .. e[1]
    end
  end
  -- Down to the newest alone, the count starts again from it: entries lost some other way
  -- (evicted, deleted by hand) leave no surplus behind.
  if len - cut == 1 then bytes = #frame end
  if cut > 0 or len == 1 then
    redis.call('XTRIM', KEYS[2], 'MAXLEN', len - cut)
    redis.call('HSET', KEYS[1], 'bytes', bytes)
  end
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
