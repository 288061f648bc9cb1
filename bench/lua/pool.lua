-- wrk script for the distinct-token runs: every request carries the next token of
-- BENCH_TOKEN_FILE (one token per line), cycling. Costs wrk a little Lua per request
-- (wrk has a core of its own in pinned mode). Prints the same BENCH_RESULT line as auth.lua.
local tokens = {}
local file = os.getenv("BENCH_TOKEN_FILE") or ""
for line in io.lines(file) do
  if line ~= "" then tokens[#tokens + 1] = "Bearer " .. line end
end
assert(#tokens > 0, "BENCH_TOKEN_FILE has no tokens")
local i = 0
local path = os.getenv("BENCH_PATH")
if not path or path == "" then path = "/" end
local headers = {}

function request()
  i = i % #tokens + 1
  headers["Authorization"] = tokens[i]
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_s=%.3f rps=%.1f mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d non2xx=%d bytes=%d\n",
    summary.requests, secs, summary.requests / secs, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status, summary.bytes))
end
