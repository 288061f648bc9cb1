-- wrk script for the 401 flood of `bench/extra.sh flood-mix`: auth.lua's fixed token and
-- BENCH_RESULT line, plus a count of the response statuses (401 vs anything else), printed
-- as one more line:  FLOOD_STATUS n401=<n> nother=<n>
-- Counting needs a Lua call per response (auth.lua avoids that), which costs wrk some CPU;
-- it is what lets extra.sh assert that every flood response was a 401.
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
dofile(dir .. "/auth.lua")

local result_line = done
local threads = {}
n401, nother = 0, 0  -- per wrk thread (each thread runs its own copy of this script)

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status == 401 then n401 = n401 + 1 else nother = nother + 1 end
end

function done(summary, latency, requests)
  result_line(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("n401")
    b = b + t:get("nother")
  end
  io.write(string.format("FLOOD_STATUS n401=%d nother=%d\n", a, b))
end
