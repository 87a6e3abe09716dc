-- Every request POSTs to one route with a write API key (API_KEY in the environment): the
-- hot route plus the cost of authentication (a SHA-256 of the key and a map lookup).
wrk.method = "POST"
wrk.path = "/transactions/AR1133"
local key = os.getenv("API_KEY")
if key == nil or key == "" then
  error("API_KEY is not set")
end
wrk.headers["Authorization"] = "Bearer " .. key
