-- KEYS: meta, log, members, owners, ids, id order, old history, names. ARGV: session, owner,
-- member ('<order key>\n<name>'), channel, joined notice (opaque), may create (1/0), room ttl
-- ms, window (newest messages sent), the joiner's epoch or '', its seq, most messages
-- recovered, most names returned. A session already in the room (another tab, or the
-- connection a reconnect replaces) gains an owner unannounced, or under another name announces
-- 'r<old name>\n<name>' (see bus/payload.rs).
-- Returns {first names, messages, epoch, seq, 1 if the room was opened (0 if not, -1 if it may
-- not be), 1 if the messages are exactly those after the joiner's seq (else they are the
-- window), how many members}.
local fresh = redis.call('EXISTS', KEYS[1], KEYS[3]) == 0
if fresh and ARGV[6] ~= '1' then return {{}, {}, '', '0', -1, 0, 0} end
for i = 1, 6 do
  if i ~= 3 and i ~= 4 then redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
end
adopt(KEYS[7], KEYS[2], KEYS[1])
local prev = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], owners_add(redis.call('HGET', KEYS[4], ARGV[1]), ARGV[2]))
if not prev then
  names_add(KEYS[8], ARGV[3], ARGV[1])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
elseif prev ~= ARGV[3] then
  names_del(KEYS[8], prev, ARGV[1])
  names_add(KEYS[8], ARGV[3], ARGV[1])
  redis.call('PUBLISH', ARGV[4], 'r' .. member_name(prev) .. '\n' .. member_name(ARGV[3]))
end
local first = redis.call('ZRANGEBYLEX', KEYS[8], '-', '+', 'LIMIT', 0, tonumber(ARGV[12]))
local count = redis.call('HLEN', KEYS[3])
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local epoch, seq = meta[1] or '', tonumber(meta[2] or '0')
if ARGV[9] ~= '' and ARGV[9] == epoch then
  local since = tonumber(ARGV[10])
  if since <= seq and seq - since <= tonumber(ARGV[11]) then
    local entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+')
    local whole = #entries == seq - since
    if whole and #entries > 0 then whole = log_seq(entries[1][1]) == since + 1 end
    if whole then
      return {first, payloads(entries), epoch, tostring(seq), fresh and 1 or 0, 1, count}
    end
  end
end
return {first, newest(KEYS[2], tonumber(ARGV[8])), epoch, tostring(seq), fresh and 1 or 0, 0, count}
