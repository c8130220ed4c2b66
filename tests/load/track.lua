-- wrk script: one single-event /v1/track per request, each with a fresh messageId, for subjects
-- bench-0..bench-999 (consented by `lethe-bench http --hold`). Usage:
--   TOKEN=... wrk -t2 -c64 -d10s -s tests/load/track.lua http://127.0.0.1:PORT
local token = os.getenv("TOKEN")
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local tag = tostring(math.random(1, 1e9))
request = function()
  n = n + 1
  local body = '{"anonymousId":"bench-' .. (n % 1000) .. '","event":"Product Clicked","messageId":"w-' .. tag .. '-' .. n ..
    '","properties":{"product_id":"tent-2p","category":"outdoor"}}'
  return wrk.format("POST", "/v1/track", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
