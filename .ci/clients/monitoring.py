"""Real traffic through flight-counter (DynamoDB store on moto behind the throttling proxy),
then every PromQL expression of the rules and the dashboard asked of a real Prometheus that
scrapes the service and evaluates the rules file.

    python monitoring.py <service-url> <prometheus-url> <dynamodb-server-pid> <write-key>

Traffic: keyless POSTs on a few routes and a concurrent burst on one (the proxy throttles it:
throttled DynamoDB calls, paced routes), keyed POSTs (Idempotency-Key) with replays and one
conflict, reads, a 401, a 400, a 404, a request the HTTP parser refuses, a request cut off at the
request deadline (408), and a store outage (the DynamoDB server stopped for a few seconds: 503s, failed
commits, /readyz 503). /readyz is polled throughout, as the kubelet does.

Then, with the dashboard's variables substituted ($namespace and $pod from the variables' own
queries, $__rate_interval as 1m):
  - each recording rule returns a series, and Prometheus reports every rule healthy;
  - each alert's signals (the left-hand sides of its conditions) return a series, and its whole
    expression is accepted; alerts on series the service does not export (kube-state-metrics)
    are listed apart;
  - each dashboard query returns a series;
  - the dashboard parses, every panel names the ${datasource} variable, and the datasource,
    namespace and pod variables exist.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "monitoring"))
import rules  # noqa: E402

service, prom, dynalite_pid, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
AUTH = {"Authorization": f"Bearer {key}"}
host, port = urllib.parse.urlsplit(service).hostname, urllib.parse.urlsplit(service).port
failures: list[str] = []


def call(method: str, url: str, headers: dict | None = None, timeout: float = 10):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


statuses: dict[str, int] = {}


def note(status: int) -> None:
    statuses[str(status)] = statuses.get(str(status), 0) + 1


def expect(status: int, want: int, what: str) -> None:
    if status != want:
        failures.append(f"traffic: {what} answered {status}, expected {want}")


def post(route: str, key_header: str | None = None) -> int:
    headers = dict(AUTH)
    if key_header:
        headers["Idempotency-Key"] = key_header
    status = call("POST", f"{service}/transactions/{route}", headers)[0]
    note(status)
    return status


def post_keyed(route: str, key_header: str) -> int:
    """A keyed POST retried on 503, as a client does (the key makes a retry safe): the store
    here is a single-threaded emulator that the burst before may still hold up."""
    for _ in range(5):
        status = post(route, key_header)
        if status != 503:
            return status
        time.sleep(0.5)
    return status


# --- traffic ------------------------------------------------------------------------------

stop_probing = threading.Event()
probes: dict[int, int] = {}


def probe_readiness() -> None:
    while not stop_probing.is_set():
        try:
            s = call("GET", f"{service}/readyz", timeout=3)[0]
            probes[s] = probes.get(s, 0) + 1
        except OSError:
            pass
        stop_probing.wait(0.5)


prober = threading.Thread(target=probe_readiness, daemon=True)
prober.start()

for i in range(20):
    expect(post(f"AB{100 + i % 5}"), 200, "a keyless POST")
with ThreadPoolExecutor(32) as pool:  # one hot route: the proxy throttles its writes
    list(pool.map(lambda _: post("HOT1"), range(300)))
keys = [str(uuid.uuid4()) for _ in range(10)]
for k in keys:
    expect(post_keyed("KY1", k), 200, "a keyed POST")
for k in keys[:3]:
    expect(post_keyed("KY1", k), 200, "a replayed keyed POST")
expect(post_keyed("KY2", keys[0]), 422, "a key reused on another route")
for i in range(10):
    s, _ = call("GET", f"{service}/transactions/AB{100 + i % 5}", AUTH)
    note(s)
note(call("POST", f"{service}/transactions/AB100")[0])  # no key: 401
note(call("POST", f"{service}/transactions/x", AUTH)[0])  # not a route: 400
note(call("GET", f"{service}/nothing-here", AUTH)[0])  # 404

with socket.create_connection((host, port), timeout=5) as s:  # refused by the HTTP parser
    s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    s.recv(4096)
with socket.create_connection((host, port), timeout=10) as s:  # cut off at the request deadline
    s.sendall(b"POST /transactions/AB100 HTTP/1.1\r\nHost: x\r\n")
    answer = s.recv(4096)
    print(f"slow request answered {answer.split(b' ')[1].decode() if answer else 'nothing'}")

# A store outage: the DynamoDB server stopped, POSTs time out (503), commits fail, /readyz turns 503.
os.kill(dynalite_pid, signal.SIGSTOP)
try:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: post(f"OUT{i}"), range(4)))
    time.sleep(2)
finally:
    os.kill(dynalite_pid, signal.SIGCONT)
deadline = time.monotonic() + 30
while call("GET", f"{service}/readyz")[0] != 200 and time.monotonic() < deadline:
    time.sleep(0.2)
for i in range(10):
    post(f"AB{100 + i % 5}")
stop_probing.set()
prober.join()
print(f"traffic answered: {dict(sorted(statuses.items()))}; /readyz probes: {dict(sorted(probes.items()))}")

# --- queries -----------------------------------------------------------------------------


def api(path: str, params: dict) -> dict:
    status, body = call("GET", f"{prom}{path}?{urllib.parse.urlencode(params, doseq=True)}")
    data = json.loads(body)
    if data.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {data.get('error', data)}")
    return data["data"]


def query(expr: str) -> list:
    return api("/api/v1/query", {"query": expr})["result"]


def wait_for(exprs: list[tuple[str, str]], within: float) -> dict[str, int]:
    """Polls until every expression returns a series (or time runs out); returns the counts."""
    got: dict[str, int] = {}
    end = time.monotonic() + within
    while True:
        for what, expr in exprs:
            if got.get(expr):
                continue
            try:
                got[expr] = len(query(expr))
            except RuntimeError as e:
                failures.append(f"{what}: {e}")
                got[expr] = -1
        if all(n != 0 for n in got.values()) or time.monotonic() > end:
            return got
        time.sleep(1)


dash = json.loads((REPO / "monitoring/grafana/flight-counter.json").read_text())
variables = {v["name"]: v for v in dash["templating"]["list"]}
for name, kind in (("datasource", "datasource"), ("namespace", "query"), ("pod", "query")):
    if variables.get(name, {}).get("type") != kind:
        failures.append(f"dashboard: no {kind} variable {name}")
if variables.get("datasource", {}).get("query") != "prometheus":
    failures.append("dashboard: the datasource variable is not of Prometheus data sources")

panels = []
for p in dash["panels"]:
    panels.append(p)
    panels.extend(p.get("panels", []))
for p in panels:
    ds = p.get("datasource")
    uid = ds.get("uid") if isinstance(ds, dict) else ds
    if uid != "${datasource}":
        failures.append(
            f"dashboard panel {p.get('title')!r}: datasource {ds!r}, not the ${{datasource}} variable"
        )
print(f"dashboard: {len(panels)} panels, each on ${{datasource}}; variables {sorted(variables)}")


def label_values(query_text: str, subst: dict[str, str]) -> list[str]:
    # label_values(metric{selector}, label)
    inner = query_text[len("label_values(") : -1]
    metric, _, label = inner.rpartition(",")
    for k, v in subst.items():
        metric = metric.replace(f"${k}", v)
    return api(f"/api/v1/label/{label.strip()}/values", {"match[]": metric.strip()})


time.sleep(3)  # a few scrapes after the last request
subst: dict[str, str] = {}
for name in ("namespace", "pod"):
    end = time.monotonic() + 30
    values: list[str] = []
    while not values and time.monotonic() < end:
        values = label_values(variables[name]["query"], subst)
        time.sleep(0.5)
    if not values:
        failures.append(f"dashboard variable {name}: {variables[name]['query']} returned nothing")
        values = ["none"]
    subst[name] = values[0]
    print(f"dashboard variable ${name} = {values[0]} (from {variables[name]['query']})")


def substitute(expr: str) -> str:
    out = expr.replace("$__rate_interval", "1m")
    for k, v in subst.items():
        out = out.replace(f"${k}", v)
    return out


groups = api("/api/v1/rules", {})["groups"]
records = [r["name"] for g in groups for r in g["rules"] if r["type"] == "recording"]
alerts = rules.alerts()
signals = [(f"alert {a.name}", s) for a in alerts if not a.needs for s in a.signals()]
dashboard_exprs = [
    (f"panel {p.get('title')!r}", substitute(t["expr"]))
    for p in panels
    for t in p.get("targets", [])
    if t.get("expr")
]
everything = [(f"recording rule {r}", r) for r in records] + signals + dashboard_exprs
got = wait_for(everything, within=120)

# Every rule evaluated without an error; every full alert expression is accepted.
groups = api("/api/v1/rules", {})["groups"]
unhealthy = [
    f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r.get("health") != "ok"
]
failures.extend(f"rule not healthy: {u}" for u in unhealthy)
for a in alerts:
    try:
        query(a.expr())
    except RuntimeError as e:
        failures.append(f"alert {a.name}: expression refused: {e}")

loaded = {r["name"] for g in groups for r in g["rules"]}
missing = [a.name for a in alerts if a.name not in loaded]
failures.extend(f"alert {m} not loaded by Prometheus" for m in missing)


def report(title: str, items: list[tuple[str, str]]) -> None:
    ok = [e for _, e in items if got.get(e, 0) > 0]
    print(f"{title}: {len(ok)}/{len(items)} returned a result")
    for what, e in items:
        if got.get(e, 0) <= 0:
            failures.append(f"{what}: no result for {e}")


report("recording rules", [(f"recording rule {r}", r) for r in records])
report("alert signals", signals)
report("dashboard queries", dashboard_exprs)
print(
    f"alerts: {len(alerts)} loaded and healthy; not provable here (need series the service does not export): "
    + ", ".join(f"{a.name} ({a.needs})" for a in alerts if a.needs)
)
firing = [
    r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting" and r.get("state") != "inactive"
]
print(f"alerts pending or firing after the traffic: {firing or 'none'}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
