"""The ledger's Redis Lua scripts. Each runs atomically, so concurrent gateway
processes never lose an update, and each is safe to replay.

Money is integer pico-dollars, always passed to Redis as strings and added with
HINCRBY (exact int64), never as Lua numbers (doubles). Every key a script uses
is built in Python (:mod:`gateway.ledger.keys`) and passed in; all of them
belong to one tenant, so a call touches one Redis Cluster slot (``KEYS[1]`` is
a key of that tenant, for routing).
"""

from __future__ import annotations

from gateway.ledger.ending import END_TASK, ONE_REQUEST

# Checks a record before anything is written, so that a bad one changes nothing.
_VALID = r"""
local MAX_TOKENS = 1e12
local function money(v) return type(v) == 'string' and (v == '' or (#v <= 18 and string.match(v, '^%d+$') ~= nil)) end
local function count(v) return type(v) == 'number' and v >= 0 and v <= MAX_TOKENS and math.floor(v) == v end
local function valid(r)
  if type(r.k) ~= 'table' or type(r.task_id) ~= 'string' or type(r.request_id) ~= 'string' then return 'keys' end
  for _, f in ipairs({'input_tokens', 'output_tokens', 'cached_input_tokens', 'reasoning_tokens', 'attempt'}) do
    if not count(r[f]) then return f end
  end
  if not money(r.cost) or not money(r.reserved) or not money(r.budget) then return 'money' end
  return nil
end
"""

# One attempt record: "<keys JSON>\x1e<record JSON>" (see gateway/ledger/encode.py; \x1e, the
# ASCII record separator, never appears raw in JSON). Returns 0 a duplicate (already
# counted, or its request was settled as interrupted first), 1 counted, {2, type, cost,
# outcome, waste, model} counted and it ended a one-request task, {-1, reason} refused (nothing written).
_RECORD_FN = END_TASK + ONE_REQUEST + _VALID + r"""
-- The keys part: '{"task":"<key>","att":"<key>",<the rest>}' (gateway/ledger/ledger.py _line: task
-- ids never need escaping). The rest is the same for every record of a tenant and day in a call:
-- decoded once per call, each record's keys a table that falls back to it. Other shapes: decoded whole.
local KEYS_OF = {}
local function keys_of(text)
  local task, att, rest = string.match(text, '^{"task":"([^"\\]*)","att":"([^"\\]*)",(.*)$')
  if not rest then return cjson.decode(text) end
  local shared = KEYS_OF[rest]
  if not shared then
    shared = {__index = cjson.decode('{' .. rest)}
    KEYS_OF[rest] = shared
  end
  return setmetatable({task = task, att = att}, shared)
end

local function record(arg)
local sep = string.find(arg, '\30', 1, true)
if not sep then return {-1, 'no keys'} end
local line = string.sub(arg, sep + 1)  -- the record as stored: without the keys it was written with
local r = cjson.decode(line)
r.k = keys_of(string.sub(arg, 1, sep - 1))
for _, f in ipairs({'day', 'retention', 'stream_maxlen'}) do  -- in the keys part (older records: in the record)
  if r[f] == nil then r[f] = r.k[f] end
end
local bad = valid(r)
if bad then return {-1, 'invalid ' .. bad} end
local k = r.k
local t = k.task
if redis.call('EXISTS', k.settledp .. r.request_id) == 1 then return 0 end  -- settled: the estimate stands
if r.final then  -- also when a duplicate: its intent, replayed with it from a journal, is stale
  redis.call('HDEL', k.intents, r.request_id)
  redis.call('ZREM', k.deadlines, r.request_id)
end
if not redis.call('SET', k.seenp .. r.request_id .. ':' .. r.attempt, '1', 'NX', 'EX', k.dedup_ttl) then
  return 0
end
local now = r.ts
local fresh = redis.call('HEXISTS', t, 'status') == 0  -- a budget reservation may have made the hash already
if fresh and r.one_request and r.final and r.attempt == 0 and r.end_outcome ~= '' then
  return one_request(k, r, line)
end
if fresh then
  redis.call('HSET', t, 'task_id', r.task_id, 'tenant', r.tenant, 'task_type', r.task_type,
             'status', 'open', 'created_at', now, 'updated_at', now)
  if type(r.who) == 'string' then  -- who acted: the key that started the task
    redis.call('HSET', t, 'who', r.who, 'actor', r.actor)
    for _, f in ipairs({'key_id', 'agent', 'person'}) do
      if type(r[f]) == 'string' then redis.call('HSET', t, f, r[f]) end
    end
  end
  if not r.one_request then redis.call('ZADD', k.tasks, now, r.task_id) end
end
local status = redis.call('HGET', t, 'status')
redis.call('HSET', t, 'updated_at', now)
if status == 'open' and r.end_outcome == '' then redis.call('ZADD', k.open, now, r.task_id) end
if r.budget ~= '' then redis.call('HSET', t, 'budget_pusd', r.budget) end
if r.attempt == 0 then redis.call('HINCRBY', t, 'requests', 1) end
redis.call('HINCRBY', t, 'attempts', 1)
local d = 'd:' .. r.deployment .. ':'
if redis.call('HINCRBY', t, d .. 'attempts', 1) == 1 then
  redis.call('HSET', t, d .. 'model', r.model, d .. 'provider', r.provider)
  local pm = redis.call('HGET', t, 'pmodel')  -- the task's public model, or 'mixed' (the metric by model)
  if not pm then redis.call('HSET', t, 'pmodel', r.model)
  elseif pm ~= r.model and pm ~= 'mixed' then redis.call('HSET', t, 'pmodel', 'mixed') end
end
for _, f in ipairs({'input_tokens', 'output_tokens', 'cached_input_tokens', 'reasoning_tokens'}) do
  if r[f] > 0 then
    redis.call('HINCRBY', t, f, r[f])
    redis.call('HINCRBY', t, d .. f, r[f])
  end
end
if r.outcome ~= 'ok' then redis.call('HINCRBY', t, 'failed_attempts', 1) end
if r.usage_source == 'estimated' then redis.call('HINCRBY', t, 'estimated', 1) end
if r.cost == '' then
  if r.usage_source ~= 'none' then redis.call('HINCRBY', t, 'unpriced', 1) end
else
  redis.call('HINCRBY', t, 'cost_pusd', r.cost)
  redis.call('HINCRBY', t, d .. 'cost_pusd', r.cost)
  if r.waste_reason ~= '' then
    redis.call('HINCRBY', t, 'waste_pusd', r.cost)
    redis.call('HINCRBY', t, 'waste:' .. r.waste_reason, r.cost)
  end
end
if r.reserved ~= '' then redis.call('HINCRBY', t, 'reserved_pusd', '-' .. r.reserved) end
if not r.one_request then  -- a one-request task keeps no attempts list: its record is in the export stream
  redis.call('RPUSH', k.att, line)
  redis.call('LTRIM', k.att, -1000, -1)
end
spend_and_export(k, r, line)
if status ~= 'open' then
  -- a late record (replayed from the spool) for a task that already ended: count it on its day
  local agg = k.aggp .. redis.call('HGET', t, 'ended_day')
  local p = redis.call('HGET', t, 'task_type') .. '|' .. status .. '|'
  if r.cost ~= '' then redis.call('HINCRBY', agg, p .. 'cost_pusd', r.cost) end
  if r.attempt == 0 then redis.call('HINCRBY', agg, p .. 'requests', 1) end
  redis.call('HINCRBY', agg, p .. 'attempts', 1)
  return 1
end
if k.route then  -- cost_per_success: which deployment the job is attributed to when it ends
  if redis.call('HGET', t, 'rt_key') ~= k.route then redis.call('HDEL', t, 'rt_ok') end  -- another model's
  redis.call('HSET', t, 'rt_key', k.route, 'rt_win', k.route_win, 'rt_last', r.deployment)
  if r.outcome == 'ok' then redis.call('HSET', t, 'rt_ok', r.deployment) end
end
if r.end_outcome ~= '' then
  local ended = end_task(k, r.task_id, r.end_outcome, now, r.day, r.retention)
  return {2, ended[1], ended[2], r.end_outcome, ended[3], ended[4]}
end
return 1
end

local function try_record(line)
  local ok, res = pcall(record, line)
  if ok then return res end
  return {-1, type(res) == 'table' and tostring(res.err) or tostring(res)}
end
"""

# ARGV: one tenant's share of a batch, in the order it was submitted, each JSON of one of:
# (the results, one per ARGV, come back as ONE string: joined by \30, a result's fields by \31,
# which is cheaper for redis-py to read than a list of lists; gateway/ledger/writer.py unpack_reply)
#   an attempt record (see _RECORD_FN): one result as _RECORD_FN says; a failing record is
#     isolated, the others count;
#   '{"intent": true, intents, deadlines, request_id, due}\x1d<record>': what to record if the
#     request is interrupted (an attempt record as above), kept until ``due`` unless renewed,
#     and removed by the request's final record: 1;
#   {"renew": true, deadlines, due, ids}: the leases of requests still in flight: 1.
# Intents and records share this one call so that a request's intent is always applied
# before its final record, whatever else the batch holds.
RECORD = _RECORD_FN + r"""
local function compact(res)  -- 1 / 0, or a result's fields joined by \31 (never in them: replaced)
  if type(res) ~= 'table' then return tostring(res) end
  local parts = {}
  for i, v in ipairs(res) do parts[i] = (string.gsub(tostring(v), '[\30\31]', '?')) end
  return table.concat(parts, '\31')
end
local out = {}
for i = 1, #ARGV do
  local line = ARGV[i]
  if string.sub(line, 1, 10) == '{"intent":' then
    local sep = string.find(line, '\29', 1, true)  -- the header, then the record to write if interrupted
    local a = cjson.decode(string.sub(line, 1, sep - 1))
    redis.call('HSET', a.intents, a.request_id, string.sub(line, sep + 1))
    redis.call('ZADD', a.deadlines, a.due, a.request_id)
    out[i] = 1
  elseif string.sub(line, 1, 9) == '{"renew":' then
    local a = cjson.decode(line)
    for _, id in ipairs(a.ids) do redis.call('ZADD', a.deadlines, 'XX', a.due, id) end
    out[i] = 1
  else
    out[i] = compact(try_record(line))
  end
end
return table.concat(out, '\30')
"""

# ARGV[1]: JSON {intents, deadlines, now, max}: settles one tenant's intents whose lease
# expired (their process died, or lost the store for longer than the lease) as interrupted:
# each intent's record is written (an estimate, marked so), its reservation released, and
# the request marked settled so that its own records, if they arrive later, are not
# counted twice. Returns one result per settled intent (see _RECORD_FN).
SETTLE = _RECORD_FN + r"""
local a = cjson.decode(ARGV[1])
local out = {}
local ids = redis.call('ZRANGEBYSCORE', a.deadlines, '-inf', a.now, 'LIMIT', 0, a.max)
for _, id in ipairs(ids) do
  local line = redis.call('HGET', a.intents, id)
  redis.call('HDEL', a.intents, id)
  redis.call('ZREM', a.deadlines, id)
  if line then
    local res = try_record(line)
    local sep = string.find(line, '\30', 1, true)
    local k = cjson.decode(string.sub(line, 1, sep - 1))
    redis.call('SET', k.settledp .. id, '1', 'EX', k.dedup_ttl)
    table.insert(out, res)
  end
end
return out
"""

# KEYS[1]: the tenants set. ARGV: tenant names the ledger has seen.
TENANT = r"""
for i = 1, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
local out = {}
for i = 1, #ARGV do out[i] = 1 end
return out
"""

# ARGV[1]: JSON {k: {task, att, open, aggp}, id, outcome, now, day, retention}. Returns {code, ...}:
# {'missing'}, {'ended', type, cost, outcome, waste, model}, {'same'}, {'conflict', status}.
COMPLETE = END_TASK + r"""
local a = cjson.decode(ARGV[1])
local t = a.k.task
if redis.call('HEXISTS', t, 'status') == 0 then return {'missing'} end
local status = redis.call('HGET', t, 'status')
if status == a.outcome then return {'same'} end
if status ~= 'open' then return {'conflict', status} end
local ended = end_task(a.k, a.id, a.outcome, a.now, a.day, a.retention)
return {'ended', ended[1], ended[2], a.outcome, ended[3], ended[4]}
"""

# ARGV[1]: JSON {k: {tp, ap, open, aggp, tasks}, cutoff, now, day, max, retention, index_cutoff}:
# abandons one tenant's tasks idle since before ``cutoff`` and trims its task index of
# tasks created before ``index_cutoff`` (their hashes have expired by retention).
# Returns a flat list: type, cost, waste, model, type, cost, waste, model, ... of the tasks it abandoned.
SWEEP = END_TASK + r"""
local a = cjson.decode(ARGV[1])
local out = {}
local ids = redis.call('ZRANGEBYSCORE', a.k.open, '-inf', a.cutoff, 'LIMIT', 0, a.max)
for _, id in ipairs(ids) do
  local k = {task = a.k.tp .. id, att = a.k.ap .. id, open = a.k.open, aggp = a.k.aggp}
  if redis.call('HGET', k.task, 'status') == 'open'
     and tonumber(redis.call('HGET', k.task, 'updated_at')) <= tonumber(a.cutoff) then
    local ended = end_task(k, id, 'abandoned', a.now, a.day, a.retention)
    table.insert(out, ended[1])
    table.insert(out, ended[2])
    table.insert(out, ended[3])
    table.insert(out, ended[4])
  else
    redis.call('ZREM', a.k.open, id)
  end
end
redis.call('ZREMRANGEBYSCORE', a.k.tasks, '-inf', '(' .. a.index_cutoff)
return out
"""

# ARGV[1]: JSON {amount, scopes: [[key, spent field, reserved field, limit, label, ttl], ...]};
# a limit of '' is no limit: the scope is reserved in, never refused by.
# Reserves `amount` in every scope, or in none: returns {'ok'} or
# {'over', label, spent, reserved, limit}. Comparisons use doubles (exact to
# a few pico-dollars below $9,000; budgets are checked, not summed, here).
RESERVE = r"""
local r = cjson.decode(ARGV[1])
local amount = tonumber(r.amount)
for _, s in ipairs(r.scopes) do
  local spent = redis.call('HGET', s[1], s[2]) or '0'
  local reserved = redis.call('HGET', s[1], s[3]) or '0'
  if s[4] ~= '' and tonumber(spent) + tonumber(reserved) + amount > tonumber(s[4]) then
    return {'over', s[5], spent, reserved, s[4]}
  end
end
for _, s in ipairs(r.scopes) do
  redis.call('HINCRBY', s[1], s[3], r.amount)
  if s[6] > 0 then redis.call('EXPIRE', s[1], s[6]) end
end
return {'ok'}
"""

# KEYS[1]: the audit stream. ARGV: audit entries as JSON, each with the stream's approximate bound in ``maxlen``.
AUDIT = r"""
local out = {}
for i = 1, #ARGV do
  local e = cjson.decode(ARGV[i])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', e.maxlen, '*', 'e', ARGV[i])
  out[i] = 1
end
return out
"""
