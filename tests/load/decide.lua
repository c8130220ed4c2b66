-- wrk script: POST /v1/decide for subjects bench-0..bench-(SUBJECTS-1) of `lethe-bench decide --hold`,
-- slot `bench` (50 candidates), top 5 (SLOT names another). With RATE (requests/s in total) and
-- THREADS (wrk's -t) set, each wrk thread sends its share of RATE on a schedule of its own: every
-- request takes the next free slot of the thread's timetable, so the total is RATE whatever the
-- latency (when the server keeps up; a late server is not sent a burst to catch up). wrk measures
-- latency from the actual send, so this is a paced run, not a coordinated-omission-free one.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } lethe_timespec;
int clock_gettime(int clock, lethe_timespec *tp);
]]
local token = os.getenv("TOKEN")
local subjects = tonumber(os.getenv("SUBJECTS") or "100000")
local rate = tonumber(os.getenv("RATE") or "0")
local threads = tonumber(os.getenv("THREADS") or "1")
local slot = os.getenv("SLOT") or "bench" -- an undeclared one: the HTTP stack's cost alone (a coded 404)
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  n = n + 1
  local body = '{"anonymousId":"bench-' .. math.random(0, subjects - 1) ..
    '","slot":"' .. slot .. '","context":{"device":"mobile"},"count":5}'
  return wrk.format("POST", "/v1/decide", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
if rate > 0 then
  local ts = ffi.new("lethe_timespec")
  local function now_ms() -- CLOCK_MONOTONIC
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 * threads / rate -- ms between two requests of this thread
  local next_at = 0
  delay = function()
    local now = now_ms()
    local at = math.max(next_at, now)
    next_at = at + interval
    return math.floor(at - now + 0.5)
  end
end
