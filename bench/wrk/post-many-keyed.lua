-- Every request POSTs to a random route among about 260,000 valid ones, with an
-- Idempotency-Key of its own (a random prefix per run and a counter).
wrk.method = "POST"
math.randomseed(os.time())
local prefix = string.format("bench-%08x-", math.random(0, 0x7fffffff))
local counter = 0

request = function()
  counter = counter + 1
  local route = "R" .. string.char(65 + math.random(0, 25)) .. math.random(1, 9999)
  return wrk.format("POST", "/transactions/" .. route, { ["Idempotency-Key"] = prefix .. counter })
end
