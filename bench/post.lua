-- wrk script: JSON POSTs of a small chat body, machine-readable summary.
--
--   wrk -t1 -c16 -d5s -s bench/post.lua http://127.0.0.1:PORT/v1/chat/completions [-- MODEL STREAM]
--
-- Settings, from wrk args after "--" (first) or environment variables:
--   BENCH_MODEL     model name                    (arg 1, default "bench-model")
--   BENCH_STREAM    "1"/"true" for stream: true   (arg 2, default false)
--   BENCH_AUTH      bearer token                  (default "sk-bench")
--   BENCH_HEADERS   extra headers, "Name: value" separated by "|"
--   BENCH_USAGE     "1": stream_options.include_usage = true when streaming (default 1)
--
-- done() prints one line: "BENCH_RESULT {json}" with latency in microseconds
-- (wrk measures each request until the last byte of its response, so for a
-- stream that is the full stream, "data: [DONE]" included).

local model = os.getenv("BENCH_MODEL") or "bench-model"
local stream = os.getenv("BENCH_STREAM") or "0"
local auth = os.getenv("BENCH_AUTH") or "sk-bench"
local extra = os.getenv("BENCH_HEADERS") or ""
local usage = os.getenv("BENCH_USAGE") or "1"

local function truthy(v)
   return v == "1" or v == "true" or v == "yes" or v == "stream"
end

local req

local function build()
   local s = truthy(stream)
   local body = '{"model":"' .. model .. '","messages":[' ..
      '{"role":"system","content":"You are a terse assistant."},' ..
      '{"role":"user","content":"Say hello in five words."}],' ..
      '"max_tokens":16,"temperature":0'
   if s then
      body = body .. ',"stream":true'
      if truthy(usage) then
         body = body .. ',"stream_options":{"include_usage":true}'
      end
   else
      body = body .. ',"stream":false'
   end
   body = body .. '}'
   local headers = {}
   headers["Content-Type"] = "application/json"
   headers["Accept"] = s and "text/event-stream" or "application/json"
   if auth ~= "" then
      headers["Authorization"] = "Bearer " .. auth
   end
   for h in string.gmatch(extra, "[^|]+") do
      local k, v = string.match(h, "^%s*([^:]-)%s*:%s*(.-)%s*$")
      if k and k ~= "" then
         headers[k] = v
      end
   end
   req = wrk.format("POST", nil, headers, body)
end

function init(args)
   if args[1] and args[1] ~= "" then model = args[1] end
   if args[2] and args[2] ~= "" then stream = args[2] end
   build()
end

function request()
   return req
end

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   local rps = 0
   if secs > 0 then rps = summary.requests / secs end
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.2f,' ..
      '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_min_us":%d,"lat_max_us":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes, rps,
      latency.mean, latency.stdev, latency.min, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9),
      e.connect, e.read, e.write, e.status, e.timeout))
end
