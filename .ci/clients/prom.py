"""Sends known traffic, then asks a real Prometheus (which scrapes the service) for the
request counter and checks it against what was sent.

    python prom.py <service-base-url> <prometheus-base-url>
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

service, prom = sys.argv[1], sys.argv[2]
POSTS, GETS, ROUTE = 23, 11, "/transactions/PR0001"


def call(method, url):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


for _ in range(POSTS):
    assert call("POST", service + ROUTE)[0] == 200
for _ in range(GETS):
    assert call("GET", service + ROUTE)[0] == 200

queries = {
    'sum(flight_counter_http_requests_total{method="POST",path="/transactions/{route}",status="200"})': POSTS,
    'sum(flight_counter_http_requests_total{method="GET",path="/transactions/{route}",status="200"})': GETS,
}
deadline = time.monotonic() + 60
pending = dict(queries)
last = {}
while pending and time.monotonic() < deadline:
    for q, want in list(pending.items()):
        try:
            url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
            status, body = call("GET", url)
            result = json.loads(body)["data"]["result"] if status == 200 else []
        except (OSError, ValueError, KeyError):
            result = []
        if result:
            value = float(result[0]["value"][1])
            last[q] = value
            if value == want:
                print(f"PromQL {q} = {value:g} (expected {want})")
                del pending[q]
    time.sleep(0.5)
if pending:
    for q, want in pending.items():
        print(f"PromQL {q}: got {last.get(q)}, expected {want}")
    sys.exit(1)
