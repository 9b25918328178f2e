-- KEYS: the room's rules (hash), the person's slow-mode turn. ARGV: now (ms), what they do
-- ('join', 'change' or 'say'), the room's ttl (ms), then the keys the person is known by.
-- Returns {0, slow-mode seconds} when they may (saying something takes their turn), else
-- {1 muted | 2 kicked | 3 slowed, ms to wait}. The same rules as store/rules.rs.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local now, act = tonumber(ARGV[1]), ARGV[2]
local function until_of(prefix)
  local most = 0
  for i = 4, #ARGV do
    local v = tonumber(redis.call('HGET', KEYS[1], prefix .. ARGV[i]) or '0')
    if v > most then most = v end
  end
  return most
end
local kicked = until_of('k:')
if kicked > now then return {2, kicked - now} end
if act ~= 'join' then
  local muted = until_of('m:')
  if muted > now then return {1, muted - now} end
end
local slow = tonumber(redis.call('HGET', KEYS[1], 'slow') or '0')
if act == 'say' and slow > 0 then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', slow * 1000) then
    return {3, math.max(redis.call('PTTL', KEYS[2]), 1)}
  end
end
-- A room in use keeps its rules.
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {0, slow}
