-- Every request reads 100 random routes (among about 260,000 valid ones) in one
-- GET /transactions?route=...&route=..., as a dashboard showing many routes side by side would.
wrk.method = "GET"
math.randomseed(os.time())

request = function()
  local params = {}
  for i = 1, 100 do
    params[i] = "route=R" .. string.char(65 + math.random(0, 25)) .. math.random(1, 9999)
  end
  return wrk.format("GET", "/transactions?" .. table.concat(params, "&"))
end
