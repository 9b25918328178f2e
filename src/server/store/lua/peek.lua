-- KEYS: meta, log, members, old history, names. ARGV: window, most names. What a reader who is
-- not a member sees: {first names, the newest window of messages, epoch, seq, how many
-- members}. Changes nothing but adopting an old list.
adopt(KEYS[4], KEYS[2], KEYS[1])
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local first = redis.call('ZRANGEBYLEX', KEYS[5], '-', '+', 'LIMIT', 0, tonumber(ARGV[2]))
return {first, newest(KEYS[2], tonumber(ARGV[1])), meta[1] or '', meta[2] or '0', redis.call('HLEN', KEYS[3])}
