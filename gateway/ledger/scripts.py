"""The ledger's Redis Lua scripts. Each runs atomically, so concurrent gateway
processes never lose an update, and each is safe to replay.

Money is integer pico-dollars, always passed to Redis as strings and added with
HINCRBY (exact int64), never as Lua numbers (doubles).

Keys (``{t}`` = tenant, ``{id}`` = task id, ``{day}`` = UTC yyyymmdd):

    tg:task:{t}:{id}            hash: the task's state and running totals
    tg:task:{t}:{id}:attempts   list: the task's attempt records (JSON, last 1000)
    tg:tasks:{t}                zset: task ids by creation time (listing)
    tg:open                     zset: "{t}\\x1f{id}" of open tasks by last activity (sweeper)
    tg:seen:{request}:{attempt} string: idempotency marker of one attempt record (7 days)
    tg:agg:{t}:{day}            hash: per task type and outcome totals of tasks that ended that day
    tg:spend:{t}:{period}       hash: a tenant's spent and reserved money for a day or month
    tg:records                  stream: every attempt record, for export (approximately bounded)
    tg:audit                    stream: policy denials, redactions, escalations (no prompt text)
    tg:health                   hash: circuit breaker state per deployment (gateway.upstream.health)
"""

from __future__ import annotations

# Ends a task: status, indexes, per-type aggregates for the day, retention.
_END_TASK = r"""
local function end_task(t, member, outcome, now, day, retention)
  local tenant = redis.call('HGET', t, 'tenant')
  local ttype = redis.call('HGET', t, 'task_type')
  redis.call('HSET', t, 'status', outcome, 'ended_at', now, 'ended_day', day)
  redis.call('ZREM', 'tg:open', member)
  local agg = 'tg:agg:' .. tenant .. ':' .. day
  local p = ttype .. '|' .. outcome .. '|'
  redis.call('HINCRBY', agg, p .. 'tasks', 1)
  local fields = {'cost_pusd', 'requests', 'attempts', 'input_tokens', 'output_tokens',
                  'waste_pusd', 'waste:retry', 'waste:fallback', 'waste:cancelled', 'unpriced'}
  local values = redis.call('HMGET', t, unpack(fields))
  for i, f in ipairs(fields) do
    local v = values[i]
    if v and v ~= '0' then redis.call('HINCRBY', agg, p .. f, v) end
  end
  redis.call('EXPIRE', agg, 34560000)  -- daily aggregates feed reports: kept 400 days, whatever the task's retention
  redis.call('EXPIRE', t, retention)
  redis.call('EXPIRE', t .. ':attempts', retention)
  return {ttype, redis.call('HGET', t, 'cost_pusd') or '0', redis.call('HGET', t, 'waste_pusd') or '0'}
end
"""

# ARGV: attempt records, each as JSON (see gateway.ledger.ledger.Ledger.record); one call
# takes a whole batch. Returns one result per record: {0} a duplicate (already counted),
# {1} counted, {2, type, cost, outcome} counted and it ended a one-request task.
RECORD = _END_TASK + r"""
local function record(line)
local r = cjson.decode(line)
local t = 'tg:task:' .. r.tenant .. ':' .. r.task_id
local member = r.tenant .. '\31' .. r.task_id
if not redis.call('SET', 'tg:seen:' .. r.request_id .. ':' .. r.attempt, '1', 'NX', 'EX', 604800) then
  return {0}
end
local now = r.ts
if redis.call('HEXISTS', t, 'status') == 0 then  -- a budget reservation may have made the hash already
  redis.call('HSET', t, 'task_id', r.task_id, 'tenant', r.tenant, 'task_type', r.task_type,
             'status', 'open', 'created_at', now, 'updated_at', now)
  redis.call('ZADD', 'tg:tasks:' .. r.tenant, now, r.task_id)
end
local status = redis.call('HGET', t, 'status')
redis.call('HSET', t, 'updated_at', now)
if status == 'open' and r.end_outcome == '' then redis.call('ZADD', 'tg:open', now, member) end
if r.budget ~= '' then redis.call('HSET', t, 'budget_pusd', r.budget) end
if r.attempt == 0 then redis.call('HINCRBY', t, 'requests', 1) end
redis.call('HINCRBY', t, 'attempts', 1)
local d = 'd:' .. r.deployment .. ':'
if redis.call('HINCRBY', t, d .. 'attempts', 1) == 1 then
  redis.call('HSET', t, d .. 'model', r.model, d .. 'provider', r.provider)
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
  for _, k in ipairs(r.spend_keys) do
    if redis.call('HINCRBY', k, 'spent', r.cost) == tonumber(r.cost) then  -- new key: give it a lifetime
      redis.call('EXPIRE', k, 3456000)
    end
  end
  if r.waste_reason ~= '' then
    redis.call('HINCRBY', t, 'waste_pusd', r.cost)
    redis.call('HINCRBY', t, 'waste:' .. r.waste_reason, r.cost)
  end
end
if r.reserved ~= '' then
  redis.call('HINCRBY', t, 'reserved_pusd', '-' .. r.reserved)
  for _, k in ipairs(r.spend_keys) do redis.call('HINCRBY', k, 'reserved', '-' .. r.reserved) end
end
redis.call('RPUSH', t .. ':attempts', line)
redis.call('LTRIM', t .. ':attempts', -1000, -1)
redis.call('XADD', 'tg:records', 'MAXLEN', '~', r.stream_maxlen, '*', 'r', line)
if status ~= 'open' then
  -- a late record (replayed from the spool) for a task that already ended: count it on its day
  local agg = 'tg:agg:' .. r.tenant .. ':' .. redis.call('HGET', t, 'ended_day')
  local p = redis.call('HGET', t, 'task_type') .. '|' .. status .. '|'
  if r.cost ~= '' then redis.call('HINCRBY', agg, p .. 'cost_pusd', r.cost) end
  if r.attempt == 0 then redis.call('HINCRBY', agg, p .. 'requests', 1) end
  redis.call('HINCRBY', agg, p .. 'attempts', 1)
  return {1}
end
if r.end_outcome ~= '' then
  local ended = end_task(t, member, r.end_outcome, now, r.day, r.retention)
  return {2, ended[1], ended[2], r.end_outcome, ended[3]}
end
return {1}
end

local out = {}
for i = 1, #ARGV do out[i] = record(ARGV[i]) end
return out
"""

# ARGV: tenant, task id, outcome, now, day, retention (s). Returns {code, ...}:
# {'missing'}, {'ended', type, cost, outcome}, {'same'}, {'conflict', status}.
COMPLETE = _END_TASK + r"""
local t = 'tg:task:' .. ARGV[1] .. ':' .. ARGV[2]
if redis.call('HEXISTS', t, 'status') == 0 then return {'missing'} end
local status = redis.call('HGET', t, 'status')
if status == ARGV[3] then return {'same'} end
if status ~= 'open' then return {'conflict', status} end
local ended = end_task(t, ARGV[1] .. '\31' .. ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]))
return {'ended', ended[1], ended[2], ARGV[3], ended[3]}
"""

# ARGV: cutoff (last activity before it means idle), now, day, max tasks, retention.
# Returns a flat list: type, cost, waste, type, cost, waste, ... of the tasks it abandoned.
SWEEP = _END_TASK + r"""
local out = {}
local members = redis.call('ZRANGEBYSCORE', 'tg:open', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
for _, member in ipairs(members) do
  local sep = string.find(member, '\31', 1, true)
  local t = 'tg:task:' .. string.sub(member, 1, sep - 1) .. ':' .. string.sub(member, sep + 1)
  if redis.call('HGET', t, 'status') == 'open'
     and tonumber(redis.call('HGET', t, 'updated_at')) <= tonumber(ARGV[1]) then
    local ended = end_task(t, member, 'abandoned', ARGV[2], ARGV[3], tonumber(ARGV[5]))
    table.insert(out, ended[1])
    table.insert(out, ended[2])
    table.insert(out, ended[3])
  else
    redis.call('ZREM', 'tg:open', member)
  end
end
return out
"""

# ARGV[1]: JSON {amount, scopes: [[key, spent field, reserved field, limit, label], ...]}.
# Reserves `amount` in every scope, or in none: returns {'ok'} or
# {'over', label, spent, reserved, limit}. Comparisons use doubles (exact to
# a few pico-dollars below $9,000; budgets are checked, not summed, here).
RESERVE = r"""
local r = cjson.decode(ARGV[1])
local amount = tonumber(r.amount)
for _, s in ipairs(r.scopes) do
  local spent = redis.call('HGET', s[1], s[2]) or '0'
  local reserved = redis.call('HGET', s[1], s[3]) or '0'
  if tonumber(spent) + tonumber(reserved) + amount > tonumber(s[4]) then
    return {'over', s[5], spent, reserved, s[4]}
  end
end
for _, s in ipairs(r.scopes) do
  redis.call('HINCRBY', s[1], s[3], r.amount)
  if s[6] > 0 then redis.call('EXPIRE', s[1], s[6]) end
end
return {'ok'}
"""

# ARGV: audit entries as JSON, each with the stream's approximate bound in ``maxlen``.
AUDIT = r"""
local out = {}
for i = 1, #ARGV do
  local e = cjson.decode(ARGV[i])
  redis.call('XADD', 'tg:audit', 'MAXLEN', '~', e.maxlen, '*', 'e', ARGV[i])
  out[i] = 1
end
return out
"""
