-- KEYS: meta, log, members, old history. ARGV: window. What a reader who is not a member sees:
-- {names, the newest window of messages, epoch, seq}. Changes nothing but adopting an old list.
adopt(KEYS[4], KEYS[2], KEYS[1])
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {redis.call('HVALS', KEYS[3]), newest(KEYS[2], tonumber(ARGV[1])), meta[1] or '', meta[2] or '0'}
