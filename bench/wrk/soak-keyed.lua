-- Keyed POSTs, each with a new Idempotency-Key, over a million routes (two letters, four
-- digits), until SOAK_REQUESTS answers have come back (then the thread stops).
wrk.method = "POST"
math.randomseed(os.time())
local prefix = string.format("soak-%08x-", math.random(0, 0x7fffffff))
local limit = tonumber(os.getenv("SOAK_REQUESTS") or "2000000")
local counter, answered = 0, 0

request = function()
  counter = counter + 1
  local i = math.random(0, 999999)
  local route = string.char(65 + math.floor(i / 9999) % 26)
    .. string.char(65 + math.floor(i / (9999 * 26)))
    .. string.format("%04d", i % 9999 + 1)
  return wrk.format("POST", "/transactions/" .. route, { ["Idempotency-Key"] = prefix .. counter })
end

response = function(status)
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end
