-- Every request POSTs to a random route among about 260,000 valid ones.
wrk.method = "POST"
math.randomseed(os.time())

request = function()
  local route = "R" .. string.char(65 + math.random(0, 25)) .. math.random(1, 9999)
  return wrk.format("POST", "/transactions/" .. route)
end
