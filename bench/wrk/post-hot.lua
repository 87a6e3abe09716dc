-- Every request POSTs to one route: the worst case for contention on one counter.
wrk.method = "POST"
wrk.path = "/transactions/AR1133"
