-- KEYS: members, owners, meta, names. ARGV: channel, epoch delivered or "", seq delivered, then
-- four per member: session, owner, member ('<order key>\n<name>'), joined notice. Puts back each member this node still has
-- (a session still in the room keeps its name, and gains the owner if it lost it; only members
-- it re-adds are announced) and, when Redis lost messages this node delivered (same epoch,
-- lower seq), raises the room's seq to what was delivered, so no seq is given twice. Returns 1
-- if it raised it.
local raised = 0
if ARGV[2] ~= '' then
  local meta = redis.call('HMGET', KEYS[3], 'epoch', 'seq')
  if meta[1] == ARGV[2] and tonumber(meta[2] or '0') < tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[3], 'seq', ARGV[3])
    raised = 1
  end
end
for i = 4, #ARGV, 4 do
  local session, owner = ARGV[i], ARGV[i + 1]
  local held = redis.call('HGET', KEYS[2], session)
  redis.call('HSET', KEYS[2], session, owners_add(held, owner))
  if not held then
    redis.call('HSET', KEYS[1], session, ARGV[i + 2])
    names_add(KEYS[4], ARGV[i + 2], session)
    redis.call('PUBLISH', ARGV[1], ARGV[i + 3])
  end
end
return raised
