-- KEYS: the room's rules (hash). ARGV: field ('slow', 'm:<who>' muted until, 'k:<who>' kicked
-- until), its value ('0' removes it), how long the rules must be kept at least (ms).
-- See store/rules.rs for what the fields mean; gate.lua reads them.
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local keep = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
