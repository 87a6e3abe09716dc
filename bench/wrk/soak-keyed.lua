-- Keyed POSTs, each with a new Idempotency-Key, over a million routes (two letters, four
-- digits). bench/soak.sh stops it once the service has recorded enough.
wrk.method = "POST"
math.randomseed(os.time())
local prefix = string.format("soak-%08x-", math.random(0, 0x7fffffff))
local counter = 0

request = function()
  counter = counter + 1
  local i = math.random(0, 999999)
  local route = string.char(65 + math.floor(i / 9999) % 26)
    .. string.char(65 + math.floor(i / (9999 * 26)))
    .. string.format("%04d", i % 9999 + 1)
  return wrk.format("POST", "/transactions/" .. route, { ["Idempotency-Key"] = prefix .. counter })
end
