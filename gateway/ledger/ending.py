"""Lua (text) of how the ledger ends tasks, shared by the scripts of :mod:`gateway.ledger.scripts`:
``end_task`` (a task's status, the day's aggregates, retention, its cost_per_success job) and the short
path of a one-request task, which writes the same from its only record."""

from __future__ import annotations

# cost_per_success: a task that a cost_per_success model served is one job of the deployment
# that served its last successful attempt (else its last attempt), for its task type: the
# task's whole cost and its outcome go to that arm of the model's route hash (the fields
# "<type>|<dep>|j", "|s" (jobs, successes, x1000) and "|c" (pico-dollars)). Each new job first
# decays the arm by 1/window, so about the last `window` jobs count (an exponential window,
# in integers). At most 1000 arms a hash; the hash expires 30 days after its last job.
# See docs/OUTCOME-ATTRIBUTION.md.
_ROUTE_OUTCOME = r"""
local function route_job(rk, dep, win, cost, ttype, outcome)
  local p = ttype .. '|' .. dep .. '|'
  local v = redis.call('HMGET', rk, p .. 'j', p .. 's', p .. 'c')
  if not v[1] and redis.call('HLEN', rk) >= 3000 then return end
  local j, s, c = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')
  redis.call('HINCRBY', rk, p .. 'j', string.format('%d', 1000 - math.floor(j / win)))
  redis.call('HINCRBY', rk, p .. 's', string.format('%d', (outcome == 'succeeded' and 1000 or 0) - math.floor(s / win)))
  redis.call('HINCRBY', rk, p .. 'c', string.format('%d', -math.floor(c / win)))
  redis.call('HINCRBY', rk, p .. 'c', cost)
  redis.call('EXPIRE', rk, 2592000)
end

local function route_outcome(t, ttype, outcome)
  local rk = redis.call('HGET', t, 'rt_key')
  if not rk then return end
  local dep = redis.call('HGET', t, 'rt_ok') or redis.call('HGET', t, 'rt_last')
  route_job(rk, dep, tonumber(redis.call('HGET', t, 'rt_win')) or 200, redis.call('HGET', t, 'cost_pusd') or '0',
            ttype, outcome)
end
"""

# Ends a task: status, indexes, per-type aggregates for the day, retention, and its
# cost_per_success outcome. k: {task, att, open, aggp} of the task's tenant.
END_TASK = _ROUTE_OUTCOME + r"""
local function end_task(k, id, outcome, now, day, retention)
  local t = k.task
  local ttype = redis.call('HGET', t, 'task_type')
  redis.call('HSET', t, 'status', outcome, 'ended_at', now, 'ended_day', day)
  redis.call('ZREM', k.open, id)
  local agg = k.aggp .. day
  local p = ttype .. '|' .. outcome .. '|'
  redis.call('HINCRBY', agg, p .. 'tasks', 1)
  local fields = {'cost_pusd', 'requests', 'attempts', 'input_tokens', 'output_tokens',
                  'waste_pusd', 'waste:retry', 'waste:fallback', 'waste:cancelled', 'waste:interrupted',
                  'waste:failed', 'unpriced', 'estimated'}
  local values = redis.call('HMGET', t, unpack(fields))
  for i, f in ipairs(fields) do
    local v = values[i]
    if v and v ~= '0' then redis.call('HINCRBY', agg, p .. f, v) end
  end
  redis.call('EXPIRE', agg, 34560000)  -- daily aggregates feed reports: kept 400 days, whatever the task's retention
  local who = redis.call('HGET', t, 'who')
  if who then  -- per actor (report --by actor): tg:{t}:aggw:<day> (gateway/ledger/keys.py agg_who)
    local aw = string.sub(k.aggp, 1, -5) .. 'aggw:' .. day
    local q = who .. '|' .. outcome .. '|'
    redis.call('HINCRBY', aw, q .. 'tasks', 1)
    local c = redis.call('HGET', t, 'cost_pusd')
    if c and c ~= '0' then redis.call('HINCRBY', aw, q .. 'cost_pusd', c) end
    redis.call('EXPIRE', aw, 34560000)
  end
  redis.call('EXPIRE', t, retention)
  redis.call('EXPIRE', k.att, retention)
  route_outcome(t, ttype, outcome)
  -- the task's public models, for the metric by model: one name, or 'mixed'
  -- (kept in 'pmodel' as the records arrive; a task written before that field existed is scanned)
  local model = redis.call('HGET', t, 'pmodel')
  if not model then
    model = 'none'
    local all = redis.call('HGETALL', t)
    for i = 1, #all, 2 do
      local f = all[i]
      if string.sub(f, 1, 2) == 'd:' and string.sub(f, -6) == ':model' then
        if model == 'none' then model = all[i + 1] elseif model ~= all[i + 1] then model = 'mixed' end
      end
    end
  end
  return {ttype, redis.call('HGET', t, 'cost_pusd') or '0', redis.call('HGET', t, 'waste_pusd') or '0', model}
end
"""

# Needs END_TASK before it (route_job). Used by the RECORD script (gateway/ledger/scripts.py).
ONE_REQUEST = r"""
-- The tenant's (and keys') spend and reservations, and the export stream: every counted record.
local function spend_and_export(k, r, line)
  if r.cost ~= '' then
    for _, s in ipairs(k.spend) do
      if redis.call('HINCRBY', s, 'spent', r.cost) == tonumber(r.cost) then  -- new key: give it a lifetime
        redis.call('EXPIRE', s, 3456000)
      end
    end
    if k.kspend then
      for _, s in ipairs(k.kspend) do redis.call('HINCRBY', s, 'spent', r.cost) end
    end
  end
  if r.reserved ~= '' then
    for _, s in ipairs(k.spend) do redis.call('HINCRBY', s, 'reserved', '-' .. r.reserved) end
    if k.kspend then
      for _, s in ipairs(k.kspend) do redis.call('HINCRBY', s, 'reserved', '-' .. r.reserved) end
    end
  end
  redis.call('XADD', k.records, 'MAXLEN', '~', r.stream_maxlen, '*', 'r', line)
end

-- A one-request task (no task id was sent) made and ended by its only record (attempt 0, final):
-- what the general path followed by end_task writes, from the record alone: the task hash in one
-- HSET (without the fields only ending a task reads: pmodel, rt_*), the day's aggregates, the
-- cost_per_success job. Same return as end_task's caller.
local function one_request(k, r, line)
  local t, now, outcome, d = k.task, r.ts, r.end_outcome, 'd:' .. r.deployment .. ':'
  local h = {'task_id', r.task_id, 'tenant', r.tenant, 'task_type', r.task_type, 'status', outcome,
             'created_at', now, 'updated_at', now, 'ended_at', now, 'ended_day', r.day,
             'requests', 1, 'attempts', 1, d .. 'attempts', 1, d .. 'model', r.model, d .. 'provider', r.provider}
  local agg = {}  -- field -> value for the day's aggregates (end_task skips zeros)
  if type(r.who) == 'string' then
    for _, f in ipairs({'who', 'actor', 'key_id', 'agent', 'person'}) do
      if type(r[f]) == 'string' then h[#h + 1] = f; h[#h + 1] = r[f] end
    end
  end
  if r.budget ~= '' then h[#h + 1] = 'budget_pusd'; h[#h + 1] = r.budget end
  for _, f in ipairs({'input_tokens', 'output_tokens', 'cached_input_tokens', 'reasoning_tokens'}) do
    if r[f] > 0 then
      h[#h + 1] = f; h[#h + 1] = r[f]; h[#h + 1] = d .. f; h[#h + 1] = r[f]
      if f == 'input_tokens' or f == 'output_tokens' then agg[f] = r[f] end
    end
  end
  if r.outcome ~= 'ok' then h[#h + 1] = 'failed_attempts'; h[#h + 1] = 1 end
  if r.usage_source == 'estimated' then h[#h + 1] = 'estimated'; h[#h + 1] = 1; agg.estimated = 1 end
  local waste = '0'
  if r.cost == '' then
    if r.usage_source ~= 'none' then h[#h + 1] = 'unpriced'; h[#h + 1] = 1; agg.unpriced = 1 end
  else
    h[#h + 1] = 'cost_pusd'; h[#h + 1] = r.cost; h[#h + 1] = d .. 'cost_pusd'; h[#h + 1] = r.cost
    if r.cost ~= '0' then agg.cost_pusd = r.cost end
    if r.waste_reason ~= '' then
      waste = r.cost
      h[#h + 1] = 'waste_pusd'; h[#h + 1] = r.cost; h[#h + 1] = 'waste:' .. r.waste_reason; h[#h + 1] = r.cost
      if r.cost ~= '0' then agg.waste_pusd = r.cost; agg['waste:' .. r.waste_reason] = r.cost end
    end
  end
  redis.call('HSET', t, unpack(h))
  if r.reserved ~= '' then redis.call('HINCRBY', t, 'reserved_pusd', '-' .. r.reserved) end
  redis.call('EXPIRE', t, r.retention)
  spend_and_export(k, r, line)
  local ak = k.aggp .. r.day
  local p = r.task_type .. '|' .. outcome .. '|'
  redis.call('HINCRBY', ak, p .. 'tasks', 1)
  redis.call('HINCRBY', ak, p .. 'requests', 1)
  redis.call('HINCRBY', ak, p .. 'attempts', 1)
  for f, v in pairs(agg) do redis.call('HINCRBY', ak, p .. f, v) end
  redis.call('EXPIRE', ak, 34560000)
  if type(r.who) == 'string' then  -- per actor: as end_task
    local aw = string.sub(k.aggp, 1, -5) .. 'aggw:' .. r.day
    local q = r.who .. '|' .. outcome .. '|'
    redis.call('HINCRBY', aw, q .. 'tasks', 1)
    if agg.cost_pusd then redis.call('HINCRBY', aw, q .. 'cost_pusd', agg.cost_pusd) end
    redis.call('EXPIRE', aw, 34560000)
  end
  local cost = r.cost ~= '' and r.cost or '0'
  if k.route then route_job(k.route, r.deployment, tonumber(k.route_win) or 200, cost, r.task_type, outcome) end
  return {2, r.task_type, cost, outcome, waste, r.model}
end

"""
