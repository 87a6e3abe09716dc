-- Every request POSTs to one route with an Idempotency-Key of its own, so each is a new keyed
-- transaction. Several wrk instances run at once against processes sharing one table, so the
-- keys come from a prefix given on the command line (`wrk ... -- <prefix>`), one per instance,
-- then the thread's number and a counter: unique across instances and threads.
wrk.method = "POST"

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local prefix
local counter = 0

function init(args)
  -- thread_id is set by setup() before init() runs in the thread.
  prefix = string.format("%s-%d-", args[1] or "bench", thread_id or 0)
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/transactions/AR1133", { ["Idempotency-Key"] = prefix .. counter })
end
