-- KEYS: meta, log, old history. ARGV: seq. The stored messages after seq (all of them: a
-- node filling a gap in what it delivered), with the room's epoch and seq.
adopt(KEYS[3], KEYS[2], KEYS[1])
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {payloads(redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+')), meta[1] or '', meta[2] or '0'}
