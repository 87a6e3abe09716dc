"""The Grafana dashboard of flight-counter, built with grafanalib. `generate.py` writes it to
monitoring/grafana/flight-counter.json, ready to import.

Template variables: `datasource` (any Prometheus), `namespace` and `pod` (multi-value, All).
Every panel queries `${datasource}`. Two rows:
  - Service: requests by operation and status, p50/p99 latency, 503 and 5xx ratios, commit
    batch size and duration, store commits by outcome, DynamoDB calls, pacing, open
    connections, readiness per pod, connection timeouts and malformed requests.
  - Business: transactions recorded per second, replays, idempotency conflicts, POSTs per
    client and authentication failures.
There is no "top routes" panel: no metric carries the route (a per-route label would be
unbounded, one series per route ever seen), so the top routes come from the logs or the store.
"""

from __future__ import annotations

from grafanalib.core import (
    OPS_FORMAT,
    PERCENT_UNIT_FORMAT,
    SECONDS_FORMAT,
    Dashboard,
    GridPos,
    RowPanel,
    Target,
    Template,
    Templating,
    Text,
    TimeSeries,
)

DS = "${datasource}"
SEL = 'namespace=~"$namespace",pod=~"$pod"'
RI = "$__rate_interval"
REQ = "flight_counter_http_requests_total"
DUR = "flight_counter_http_request_duration_seconds"
POST = 'method="POST",path="/transactions/{route}"'
READS = 'method="GET",path=~"/transactions.*"'


def rate(metric: str, extra: str = "") -> str:
    sel = SEL + ("," + extra if extra else "")
    return f"rate({metric}{{{sel}}}[{RI}])"


def quantile(q: float, metric: str, extra: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}le) ({rate(metric + '_bucket', extra)}))"


def ts(title: str, targets: list[tuple[str, str]], unit: str = "", description: str = "", **kw) -> TimeSeries:
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DS,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i))
            for i, (expr, legend) in enumerate(targets)
        ],
        unit=unit,
        **kw,
    )


def service_panels() -> list:
    api = 'path=~"/transactions.*"'

    def ratio(good: str) -> str:
        return f"1 - (sum ({rate(REQ, api + ',' + good)}) / sum ({rate(REQ, api)}))"

    ready, probes = 'path="/readyz",status="200"', 'path="/readyz"'
    return [
        ts(
            "Requests by operation and status",
            [(f"sum by (method, path, status) ({rate(REQ)})", "{{method}} {{path}} {{status}}")],
            OPS_FORMAT,
            "Requests answered per second, by method, route template and status.",
        ),
        ts(
            "Latency p50 / p99 by operation",
            [
                (quantile(0.5, DUR, "", "method, path, "), "p50 {{method}} {{path}}"),
                (quantile(0.99, DUR, "", "method, path, "), "p99 {{method}} {{path}}"),
            ],
            SECONDS_FORMAT,
            "POST SLO: 99% of POSTs under 250 ms. Reads: 99.9% under 1 s.",
        ),
        ts(
            "503 and 5xx ratio (transactions API)",
            [(ratio('status!="503"'), "503"), (ratio('status!~"5.."'), "5xx")],
            PERCENT_UNIT_FORMAT,
            "Share of /transactions requests answered 503 (a failed or timed-out commit, the queue full, "
            "not ready) and any 5xx. POST availability SLO: 99.9% non-5xx.",
        ),
        ts(
            "Commit batch size",
            [
                (quantile(0.5, "flight_counter_store_commit_batch_size", "", ""), "p50"),
                (quantile(0.99, "flight_counter_store_commit_batch_size", "", ""), "p99"),
                (
                    f"sum ({rate('flight_counter_store_commit_batch_size_sum')}) / sum ({rate('flight_counter_store_commit_batch_size_count')})",
                    "mean",
                ),
            ],
            "",
            "Transactions per store commit (group commit).",
        ),
        ts(
            "Commit duration p50 / p99",
            [
                (quantile(0.5, "flight_counter_store_commit_duration_seconds", "", ""), "p50"),
                (quantile(0.99, "flight_counter_store_commit_duration_seconds", "", ""), "p99"),
            ],
            SECONDS_FORMAT,
        ),
        ts(
            "Store commits by outcome",
            [(f"sum by (outcome) ({rate('flight_counter_store_commits_total')})", "{{outcome}}")],
            OPS_FORMAT,
            "ok; error (every POST in it answered 503); throttled (refused for its rate, retried).",
        ),
        ts(
            "DynamoDB calls by operation and outcome",
            [
                (
                    f"sum by (operation, outcome) ({rate('flight_counter_dynamodb_calls_total')})",
                    "{{operation}} {{outcome}}",
                )
            ],
            OPS_FORMAT,
            "Every attempt, retries included. Empty on the embedded and memory stores.",
        ),
        ts(
            "Paced routes and slowest pace",
            [
                (f"sum (flight_counter_store_paced_routes{{{SEL}}})", "paced routes"),
                (
                    f"max by (pod) (flight_counter_store_slowest_route_pace{{{SEL}}})",
                    "slowest pace {{pod}} (commits/s, 0: none paced)",
                ),
            ],
            "",
            "Routes slowed down because DynamoDB throttled them (see docs/dynamodb.md).",
        ),
        ts(
            "Open connections per pod",
            [(f"sum by (pod) (flight_counter_http_open_connections{{{SEL}}})", "{{pod}}")],
            "",
        ),
        ts(
            "Readiness per pod",
            [(f"sum by (pod) ({rate(REQ, ready)}) / sum by (pod) ({rate(REQ, probes)})", "{{pod}}")],
            PERCENT_UNIT_FORMAT,
            "Share of readiness probes (/readyz) the pod answered 200; below 100% it was out of the load balancer.",
        ),
        ts(
            "Connection timeouts and malformed requests",
            [
                (
                    f"sum by (deadline) ({rate('flight_counter_http_connection_timeouts_total')})",
                    "timeout {{deadline}}",
                ),
                (
                    f"sum by (status) ({rate('flight_counter_http_malformed_requests_total')})",
                    "malformed {{status}}",
                ),
            ],
            OPS_FORMAT,
            "Connections closed past the idle or request deadline (408), and requests the HTTP parser refused.",
        ),
    ]


def business_panels() -> list:
    accepted, reads = POST + ',status="200"', READS + ',status="200"'
    return [
        ts(
            "Transactions recorded per second",
            [(f"sum ({rate('flight_counter_transactions_recorded_total')})", "recorded")],
            OPS_FORMAT,
            "Durably recorded transactions (replays of an Idempotency-Key not included).",
        ),
        ts(
            "Replays and idempotency conflicts",
            [
                (f"sum ({rate('flight_counter_idempotent_replays_total')})", "replays"),
                (f"sum ({rate('flight_counter_idempotency_conflicts_total')})", "conflicts (422)"),
            ],
            OPS_FORMAT,
        ),
        ts(
            "Accepted POSTs by client",
            [(f"sum by (client) ({rate(REQ, accepted)})", "{{client}}")],
            OPS_FORMAT,
            "Per API client (a name from the keys file, or anonymous: a bounded set).",
        ),
        ts("Reads by operation", [(f"sum by (path) ({rate(REQ, reads)})", "{{path}}")], OPS_FORMAT),
        ts(
            "Authentication failures by reason",
            [(f"sum by (reason) ({rate('flight_counter_auth_failures_total')})", "{{reason}}")],
            OPS_FORMAT,
        ),
        Text(
            title="Top routes",
            content=(
                "No panel shows the busiest routes: no metric carries the route. A per-route label would "
                "create one series per route ever seen (unbounded), so the request metrics carry the route "
                "*template* only. Find hot routes in the logs, or with DynamoDB Contributor Insights "
                "(`contributor_insights` in the dynamodb Terraform root)."
            ),
            mode="markdown",
        ),
    ]


def layout(row_title: str, panels: list, y: int) -> tuple[list, int]:
    out = [RowPanel(title=row_title, gridPos=GridPos(h=1, w=24, x=0, y=y))]
    y += 1
    for i, p in enumerate(panels):
        p.gridPos = GridPos(h=8, w=12, x=12 * (i % 2), y=y + 8 * (i // 2))
        out.append(p)
    return out, y + 8 * ((len(panels) + 1) // 2)


def dashboard() -> Dashboard:
    service, y = layout("Service", service_panels(), 0)
    business, _ = layout("Business", business_panels(), y)
    panels = service + business
    for i, p in enumerate(panels, 1):
        p.id = i
        if isinstance(p, (RowPanel, Text)):
            p.dataSource = DS
    return Dashboard(
        title="flight-counter",
        uid="flight-counter",
        description="flight-counter: service and business view (generated by monitoring/generate.py)",
        tags=["flight-counter"],
        timezone="utc",
        refresh="30s",
        panels=panels,
        templating=Templating(
            list=[
                Template(
                    name="datasource",
                    label="Data source",
                    type="datasource",
                    query="prometheus",
                    default="Prometheus",
                ),
                Template(
                    name="namespace",
                    label="Namespace",
                    dataSource=DS,
                    query="label_values(flight_counter_build_info, namespace)",
                    default="flight-counter",
                    refresh=2,
                ),
                Template(
                    name="pod",
                    label="Pod",
                    dataSource=DS,
                    query='label_values(flight_counter_build_info{namespace=~"$namespace"}, pod)',
                    multi=True,
                    includeAll=True,
                    allValue=".*",
                    default="$__all",
                    refresh=2,
                ),
            ]
        ),
    ).auto_panel_ids()


# Every panel's queries, as (panel title, expr): what the real-Prometheus check runs.
def queries() -> list[tuple[str, str]]:
    out = []
    for p in service_panels() + business_panels():
        for t in getattr(p, "targets", []) or []:
            out.append((p.title, t.expr))
    return out
