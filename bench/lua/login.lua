-- wrk script for `bench/extra.sh login`: every request is the same static
--   POST <BENCH_PATH, default /auth>   Content-Type: application/json   <BENCH_BODY>
-- (default body: the shipped seed user's credentials). The result line (BENCH_RESULT) and
-- the BENCH_TOKEN / BENCH_PATH handling come from auth.lua, loaded from this file's folder.
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
dofile(dir .. "/auth.lua")

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
if wrk.body == "" then wrk.body = '{"username":"user1","password":"abcxyz"}' end
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("BENCH_PATH")
if not path or path == "" then wrk.path = "/auth" end
