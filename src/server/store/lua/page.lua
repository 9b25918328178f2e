-- KEYS: meta, log, old history. ARGV: a seq or '' for the newest, how many. Up to that many
-- stored messages before the seq, plus one if there are more (the oldest), newest first; and
-- the room's epoch.
adopt(KEYS[3], KEYS[2], KEYS[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local before = '+'
if ARGV[1] ~= '' then
  -- Nothing comes before the first message (and '(0-0' is no stream id).
  if tonumber(ARGV[1]) <= 1 then return {{}, epoch} end
  before = '(' .. ARGV[1] .. '-0'
end
local entries = redis.call('XREVRANGE', KEYS[2], before, '-', 'COUNT', tonumber(ARGV[2]) + 1)
return {payloads(entries), epoch}
