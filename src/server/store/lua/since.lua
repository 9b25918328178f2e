-- KEYS: meta, history.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {redis.call('LRANGE', KEYS[2], 0, -1), meta[1] or '', meta[2] or '0'}
