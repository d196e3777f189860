"""The Lua scripts of the Redis backend: each write, with its index upkeep, runs atomically.

Every script is a constant; the drivers load each once (SCRIPT LOAD) and call it by SHA.
Layout of one instance hash (short field names keep every write small):

``id`` instance id, ``n`` name, ``s`` runtime status, ``c``/``u``/``cu`` created, last
updated and custom-status-updated times (microseconds since the epoch), ``e`` etag,
``cs``/``ce`` custom status bytes and encoding, ``i``/``ie`` input, ``o``/``oe`` output,
``w`` the ids of the last writes (lost-answer recognition). Each write publishes its new
etag on a channel named like the hash (channels and keys are separate namespaces).

A write id is the new etag, made by the client: 24 characters, unique per write. A write
appends its id to ``w`` (keeping the last ``RECENT_WRITES``), so a retry after a lost answer
can tell whether the first attempt landed. Scripts called with the retry flag answer:
``ok`` when the id is there (the first attempt landed), ``unknown`` when the list is full and
the id is absent and the state moved on (the first attempt may have landed and been pushed
out), and otherwise behave as a first attempt (the write cannot have landed).
"""

from __future__ import annotations

from typing import Final

from durastate.core.records import TERMINAL_STATUSES, RuntimeStatus

WRITE_ID_LENGTH: Final = 24
RECENT_WRITES: Final = 16

#: Index keys passed to the scripts, after the instance hash: all ids (lexicographic),
#: created time (score), then one lexicographic set per runtime status, in this order.
STATUS_ORDER: Final = tuple(RuntimeStatus)

_STATUS_SLOTS = ", ".join(
    f"{status.value} = {offset}" for offset, status in enumerate(STATUS_ORDER)
)
_TERMINAL = ", ".join(f"{status.value} = true" for status in sorted(TERMINAL_STATUSES))

_COMMON = f"""
local WID = {WRITE_ID_LENGTH}
local RECENT = {WRITE_ID_LENGTH * RECENT_WRITES}
local STATUS_OFFSET = {{{_STATUS_SLOTS}}}
local TERMINAL = {{{_TERMINAL}}}
local function seen(list, wid)
  if not list then return 'no' end
  local at = string.find(list, wid, 1, true)
  while at do
    if (at - 1) % WID == 0 then return 'ours' end
    at = string.find(list, wid, at + 1, true)
  end
  if #list >= RECENT then return 'unknown' end
  return 'no'
end
local function remember(list, wid)
  list = (list or '') .. wid
  if #list > RECENT then list = string.sub(list, -RECENT) end
  return list
end
"""

# The hot path, so the client packs as few arguments as it can: KEYS: hash. ARGV: a header
# "<retry flag><write id><now>,<expire-at ms or empty>,<encoding length>,<encoding><etag>",
# then the data. Reply (one string): 'o'..etag written, 's'..etag same bytes (nothing
# written), 'x'..etag stale, 'm' missing, 'u' outcome unknown.
CUSTOM_STATUS: Final = (
    _COMMON
    + """
local retry, wid, now, expire, size, rest = string.match(ARGV[1],
  '^(%d)(' .. string.rep('%x', WID) .. ')(%d+),(%d*),(%d+),(.*)$')
size = tonumber(size)
local encoding, etag = string.sub(rest, 1, size), string.sub(rest, size + 1)
local cur = redis.call('HMGET', KEYS[1], 'e', 'cs', 'ce', 'w')
if not cur[1] then return 'm' end
if retry == '1' then
  local verdict = seen(cur[4], wid)
  if verdict == 'ours' then return 'o' .. wid end
  if verdict == 'unknown' and etag ~= cur[1] then return 'u' end
end
if etag ~= '' and etag ~= cur[1] then return 'x' .. cur[1] end
if cur[2] == ARGV[2] and cur[3] == encoding then return 's' .. cur[1] end
redis.call('HSET', KEYS[1], 'cs', ARGV[2], 'ce', encoding, 'cu', now, 'u', now,
  'e', wid, 'w', remember(cur[4], wid))
if expire ~= '' then redis.call('PEXPIREAT', KEYS[1], expire) end
redis.call('PUBLISH', KEYS[1], wid)
return 'o' .. wid
"""
)

# KEYS: hash, all ids, created, one set per status. ARGV: id, name, status, created, write
# id, restart, retry, status data, status encoding or '', input data, input encoding or '',
# expire-at ms or ''. Reply: {'ok', etag} | {'exists', status} | {'unknown'}.
CREATE: Final = (
    _COMMON
    + """
local cur = redis.call('HMGET', KEYS[1], 's', 'w')
if cur[1] then
  if ARGV[7] == '1' then
    local verdict = seen(cur[2], ARGV[5])
    if verdict == 'ours' then return {'ok', ARGV[5]} end
    if verdict == 'unknown' then return {'unknown'} end
  end
  if ARGV[6] ~= '1' or not TERMINAL[cur[1]] then return {'exists', cur[1]} end
  redis.call('DEL', KEYS[1])
end
for offset = 0, #KEYS - 4 do redis.call('ZREM', KEYS[4 + offset], ARGV[1]) end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'n', ARGV[2], 's', ARGV[3], 'c', ARGV[4],
  'u', ARGV[4], 'e', ARGV[5], 'w', ARGV[5])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'cs', ARGV[8], 'ce', ARGV[9], 'cu', ARGV[4])
end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'i', ARGV[10], 'ie', ARGV[11]) end
if ARGV[12] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[12]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[4 + STATUS_OFFSET[ARGV[3]]], 0, ARGV[1])
redis.call('PUBLISH', KEYS[1], ARGV[5])
return {'ok', ARGV[5]}
"""
)

# KEYS: hash, one set per status. ARGV: etag or '', status, now, write id, retry,
# set output, output data, output encoding or '', expire-at ms or '', id.
# Reply: {'ok', etag} | {'stale', etag} | {'missing'} | {'unknown'}.
RUNTIME_STATUS: Final = (
    _COMMON
    + """
local cur = redis.call('HMGET', KEYS[1], 'e', 's', 'w')
if not cur[1] then return {'missing'} end
if ARGV[5] == '1' then
  local verdict = seen(cur[3], ARGV[4])
  if verdict == 'ours' then return {'ok', ARGV[4]} end
  if verdict == 'unknown' and ARGV[1] ~= cur[1] then return {'unknown'} end
end
if ARGV[1] ~= '' and ARGV[1] ~= cur[1] then return {'stale', cur[1]} end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'u', ARGV[3], 'e', ARGV[4],
  'w', remember(cur[3], ARGV[4]))
if ARGV[6] == '1' then
  if ARGV[8] == '' then
    redis.call('HDEL', KEYS[1], 'o', 'oe')
  else
    redis.call('HSET', KEYS[1], 'o', ARGV[7], 'oe', ARGV[8])
  end
end
if cur[2] ~= ARGV[2] then
  local old = STATUS_OFFSET[cur[2]]
  if old then redis.call('ZREM', KEYS[2 + old], ARGV[10]) end
  redis.call('ZADD', KEYS[2 + STATUS_OFFSET[ARGV[2]]], 0, ARGV[10])
end
if ARGV[9] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[9]) end
redis.call('PUBLISH', KEYS[1], ARGV[4])
return {'ok', ARGV[4]}
"""
)

# KEYS: hash. ARGV: field names. Reply: their values (nil where absent). A script, not a
# plain HMGET, so that reads share the drivers' one path (script cache, retries, errors).
READ: Final = """
return redis.call('HMGET', KEYS[1], unpack(ARGV))
"""

# KEYS: hash, all ids, created, one set per status. ARGV: id. Reply: 1 | 0.
DELETE: Final = """
local existed = redis.call('DEL', KEYS[1])
for index = 2, #KEYS do redis.call('ZREM', KEYS[index], ARGV[1]) end
if existed == 1 then redis.call('PUBLISH', KEYS[1], '') end
return existed
"""

# KEYS: all ids, created, one set per status. ARGV: key prefix, limit, what ('0' metadata,
# '1' with payloads, 'p' purge), id prefix or '', created from or '', created to or '',
# plan ('lex' | 'time' | 'status'), cursor a, cursor b, statuses ('' or comma-separated),
# budget (index entries examined at most), '=' .. name or '', updated from or '', updated
# to or ''.
# Walks one index in its order, reads each candidate's hash, drops index entries whose hash
# is gone (expired), filters, and returns {cursor a or false, cursor b or false, count,
# fields of each match...} (for a purge: deletes the matches and returns the count only;
# what 'c' counts them: the count, then each runtime status met and its number).
QUERY: Final = (
    _COMMON
    + """
local kp, limit, what = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local idprefix, from, to = ARGV[4], ARGV[5], ARGV[6]
local plan, budget = ARGV[7], tonumber(ARGV[11])
local wanted_name, ufrom, uto = ARGV[12], ARGV[13], ARGV[14]
local fields = {'id', 'n', 's', 'c', 'u', 'cu', 'e', 'cs', 'ce'}
if what == '1' then
  for _, name in ipairs({'i', 'ie', 'o', 'oe'}) do table.insert(fields, name) end
end
local statuses = {}
for name in string.gmatch(ARGV[10], '[^,]+') do table.insert(statuses, name) end
local escapes = {['%'] = '%25', ['{'] = '%7B', ['}'] = '%7D'}
local function hash_key(id)
  return kp .. 'i:{' .. string.gsub(id, '[%%{}]', escapes) .. '}'
end
local function unindex(id)
  for index = 1, #KEYS do redis.call('ZREM', KEYS[index], id) end
end
local function bytes_after(a, b)
  local n = math.min(#a, #b)
  for index = 1, n do
    local x, y = string.byte(a, index), string.byte(b, index)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local out, count, examined, tally = {}, 0, 0, {}
local function consider(id, status)
  examined = examined + 1
  local key = hash_key(id)
  local got = redis.call('HMGET', key, unpack(fields))
  if not got[1] then unindex(id) return end
  if status and got[3] ~= status then
    redis.call('ZREM', KEYS[3 + STATUS_OFFSET[status]], id) return
  end
  if idprefix ~= '' and string.sub(id, 1, #idprefix) ~= idprefix then return end
  local created = tonumber(got[4])
  if from ~= '' and (not created or created < tonumber(from)) then return end
  if to ~= '' and (not created or created >= tonumber(to)) then return end
  if wanted_name ~= '' and got[2] ~= string.sub(wanted_name, 2) then return end
  local updated = tonumber(got[5])
  if ufrom ~= '' and (not updated or updated < tonumber(ufrom)) then return end
  if uto ~= '' and (not updated or updated >= tonumber(uto)) then return end
  if #statuses > 0 and not status then
    local wanted = false
    for _, name in ipairs(statuses) do if got[3] == name then wanted = true end end
    if not wanted then return end
  end
  count = count + 1
  if what == 'p' then
    redis.call('DEL', key)
    unindex(id)
    redis.call('PUBLISH', key, '')
  elseif what == 'c' then
    tally[got[3]] = (tally[got[3]] or 0) + 1
  else
    for index = 1, #fields do table.insert(out, got[index]) end
  end
end
local function walk_lex(key, after, status)
  local low = '-'
  if after ~= '' then low = '(' .. after elseif idprefix ~= '' then low = '[' .. idprefix end
  local high = '+'
  if idprefix ~= '' then high = '(' .. idprefix .. '\\255' end
  while count < limit and examined < budget do
    local batch = redis.call('ZRANGEBYLEX', key, low, high, 'LIMIT', 0, limit - count)
    if #batch == 0 then return nil end
    for _, id in ipairs(batch) do
      after = id
      consider(id, status)
      if count >= limit or examined >= budget then break end
    end
    low = '(' .. after
  end
  if #redis.call('ZRANGEBYLEX', key, '(' .. after, high, 'LIMIT', 0, 1) == 0 then return nil end
  return after
end
local a, b = false, false
if plan == 'time' then
  local low, high = '-inf', '+inf'
  if from ~= '' then low = from end
  if to ~= '' then high = '(' .. to end
  local last_score, last_id = ARGV[8], ARGV[9]
  local exhausted = false
  local function full() return count >= limit or examined >= budget end
  while not full() do
    if last_score ~= '' then
      -- first the rest of the ties at the last score (equal scores sort by bytes)
      local ties = redis.call('ZRANGEBYSCORE', KEYS[2], last_score, last_score)
      for _, id in ipairs(ties) do
        if bytes_after(id, last_id) then
          last_id = id
          consider(id, nil)
          if full() then break end
        end
      end
      if full() then break end
      low = '(' .. last_score
    end
    local batch = redis.call('ZRANGEBYSCORE', KEYS[2], low, high, 'WITHSCORES', 'LIMIT', 0,
      limit - count)
    if #batch == 0 then exhausted = true break end
    for index = 1, #batch, 2 do
      last_id, last_score = batch[index], batch[index + 1]
      consider(last_id, nil)
      if full() then break end
    end
  end
  if not exhausted then a, b = last_score, last_id end
elseif plan == 'status' then
  local position, after = tonumber(ARGV[8]), ARGV[9]
  while position <= #statuses do
    local status = statuses[position]
    local resume = walk_lex(KEYS[3 + STATUS_OFFSET[status]], after, status)
    if resume then a, b = tostring(position), resume break end
    position, after = position + 1, ''
    if count >= limit or examined >= budget then
      if position <= #statuses then a, b = tostring(position), '' end
      break
    end
  end
else
  local resume = walk_lex(KEYS[1], ARGV[9], nil)
  if resume then a, b = '', resume end
end
if what == 'p' then return {a, b, count} end
if what == 'c' then
  local reply = {a, b, count}
  for status, number in pairs(tally) do
    table.insert(reply, status)
    table.insert(reply, number)
  end
  return reply
end
local reply = {a, b, count}
for _, value in ipairs(out) do table.insert(reply, value) end
return reply
"""
)
