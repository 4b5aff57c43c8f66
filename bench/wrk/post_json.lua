-- wrk script for bench/service_bench.sh: POST a JSON body read from a file, with
-- `Authorization: Bearer <token>`, and print one machine-readable summary line.
--
--   BODY_FILE=/tmp/.../predict_1.json BENCH_TOKEN=pk_... \
--     wrk -t2 -c32 -d20s --latency -s bench/wrk/post_json.lua http://127.0.0.1:18080/api/v1/models/bench/predict
--
-- Every thread runs this file in its own Lua state, so each reads the body once at start.

local path = os.getenv("BODY_FILE")
local token = os.getenv("BENCH_TOKEN")
if not path or path == "" then error("post_json.lua: set BODY_FILE to the JSON body's path") end
if not token or token == "" then error("post_json.lua: set BENCH_TOKEN to the bearer token") end

local f = assert(io.open(path, "rb"), "post_json.lua: cannot open " .. path)
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_s=%.3f rps=%.2f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
