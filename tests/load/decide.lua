-- wrk script: POST /v1/decide for subjects bench-0..bench-(SUBJECTS-1) of `lethe-bench decide --hold`,
-- slot `bench` (50 candidates), top 5. With RATE (requests/s in total) and CONNECTIONS set, each
-- connection waits between requests so that the total is at most RATE (wrk measures latency from
-- the actual send, so this is a paced run, not a coordinated-omission-free one).
local token = os.getenv("TOKEN")
local subjects = tonumber(os.getenv("SUBJECTS") or "100000")
local rate = tonumber(os.getenv("RATE") or "0")
local connections = tonumber(os.getenv("CONNECTIONS") or "1")
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  n = n + 1
  local body = '{"anonymousId":"bench-' .. math.random(0, subjects - 1) ..
    '","slot":"bench","context":{"device":"mobile"},"count":5}'
  return wrk.format("POST", "/v1/decide", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
if rate > 0 then
  delay = function()
    return math.max(0, math.floor(1000 * connections / rate) - 1)
  end
end
