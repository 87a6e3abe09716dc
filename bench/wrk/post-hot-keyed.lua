-- Every request POSTs to one route with an Idempotency-Key of its own (a random prefix per
-- run and a counter), so each is a new keyed transaction: the keyed path's full cost.
wrk.method = "POST"
math.randomseed(os.time())
local prefix = string.format("bench-%08x-", math.random(0, 0x7fffffff))
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("POST", "/transactions/AR1133", { ["Idempotency-Key"] = prefix .. counter })
end
