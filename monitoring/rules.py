"""The one source of flight-counter's Prometheus rules: the SLO recording rules, the
multi-window multi-burn-rate alerts on them, and the operational alerts, each with the
synthetic series its unit test feeds promtool (one case that must fire, one that must not).

`generate.py` writes, from this file alone:
  - monitoring/prometheus/flight-counter.rules.yml        (plain Prometheus rules file)
  - kubernetes/components/monitoring/prometheusrule.yaml   (the same groups as a PrometheusRule)
  - monitoring/prometheus/flight-counter.rules.test.yml   (promtool unit tests)

Every alert's expression is built from `Cond`itions, whose left-hand sides (the signals) are
what the real-Prometheus check asks for after real traffic: a signal that returns nothing
means a metric or label that does not exist.

Label conventions: the service's series carry `namespace` and `pod` as target labels (the
PodMonitor in kubernetes/components/monitoring, or the `kubernetes-pods` relabelling of plain
Prometheus). Rules aggregate by `namespace`, and by `pod` where the signal is per pod. No
rule or panel uses a per-route label: the request metrics have none (routes are unbounded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Where the runbooks live; the alerts link to an anchor of this page. Set it to your
# repository's copy of docs/operations.md and run `python monitoring/generate.py`.
RUNBOOK_BASE = "https://github.com/OWNER/flight-counter/blob/main/docs/operations.md"

REQ = "flight_counter_http_requests_total"
DUR = "flight_counter_http_request_duration_seconds"

# Writes: POST on the one write path. Reads: every GET under /transactions (the route's
# total, its daily and monthly counts, and the list), whatever templates are added later.
POST = 'method="POST",path="/transactions/{route}"'
READS = 'method="GET",path=~"/transactions.*"'

# --- SLOs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slo:
    key: str  # recording rule infix and alert name part
    title: str
    objective: float  # e.g. 0.999
    good: str  # PromQL selector body of good events (rate taken of it)
    total: str  # PromQL selector body of all events
    anchor: str  # runbook anchor in docs/operations.md

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)

    def record(self, window: str) -> str:
        return f"namespace:flight_counter_{self.key}_errors:ratio_rate{window}"

    def error_ratio(self, window: str) -> str:
        # 1 - good/total rather than bad/total: the good series exist as soon as there is
        # traffic, so the ratio is 0 (not absent) while nothing fails.
        return (
            f"1 - (sum by (namespace) (rate({self.good}[{window}]))"
            f" / sum by (namespace) (rate({self.total}[{window}])))"
        )


SLOS = [
    Slo(
        key="post_availability",
        title="POST availability",
        objective=0.999,
        good=f'{REQ}{{{POST},status!~"5.."}}',
        total=f"{REQ}{{{POST}}}",
        anchor="slo-post-availability",
    ),
    Slo(
        key="post_latency",
        title="POST latency",
        objective=0.99,
        good=f'{DUR}_bucket{{{POST},status!~"5..",le="0.25"}}',
        total=f'{DUR}_count{{{POST},status!~"5.."}}',
        anchor="slo-post-latency",
    ),
    Slo(
        key="read_freshness",
        title="read freshness",
        objective=0.999,
        good=f'{DUR}_bucket{{{READS},status!~"5..",le="1"}}',
        total=f"{DUR}_count{{{READS}}}",
        anchor="slo-read-freshness",
    ),
]

WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]

# (severity, [(long window, short window, burn rate, for)]) from the SRE workbook's table:
# 2% of a 30-day budget in 1h, 5% in 6h (page); 10% in 1d, 10% in 3d (ticket).
BURN_ALERTS = [
    ("page", "BudgetBurn", [("1h", "5m", 14.4), ("6h", "30m", 6)], "2m"),
    ("ticket", "BudgetBurnSlow", [("1d", "2h", 3), ("3d", "6h", 1)], "15m"),
]

# --- Rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    signal: str
    op: str
    threshold: str

    def text(self) -> str:
        return f"{self.signal} {self.op} {self.threshold}"


@dataclass
class Case:
    """A promtool unit test case: input series (promtool's expanding notation), the time to
    evaluate at, and the labels of the alert expected to fire (None: it must stay silent)."""

    series: dict[str, str]
    at: str
    fires_with: dict[str, str] | None


@dataclass
class Alert:
    name: str
    any_of: list[list[Cond]]  # OR of ANDs
    for_: str
    severity: str
    summary: str
    description: str
    anchor: str
    fire: Case
    silent: Case
    needs: str | None = None  # series the service does not export (e.g. kube-state-metrics)
    extra_labels: dict[str, str] = field(default_factory=dict)

    def expr(self) -> str:
        ands = [
            " and ".join(f"({c.text()})" if len(conj) > 1 else c.text() for c in conj) for conj in self.any_of
        ]
        if len(ands) == 1:
            return ands[0]
        return "\n  or\n".join(f"({a})" for a in ands)

    def signals(self) -> list[str]:
        out: list[str] = []
        for conj in self.any_of:
            for c in conj:
                if c.signal not in out:
                    out.append(c.signal)
        return out


NS = 'namespace="flight-counter"'
POD = 'pod="flight-counter-7d9f8-abcde"'
NSPOD = f"{NS},{POD}"


def fmt(x: float) -> str:
    return f"{x:g}"


def burn_floor(pairs, slo: Slo) -> str:
    return f"{pairs[0][2] * slo.budget * 100:g}%"


def burn_alert(slo: Slo, severity: str, suffix: str, pairs, for_: str) -> Alert:
    any_of = [
        [
            Cond(slo.record(long), ">", fmt(rate * slo.budget)),
            Cond(slo.record(short), ">", fmt(rate * slo.budget)),
        ]
        for long, short, rate in pairs
    ]
    name = "FlightCounter" + "".join(p.capitalize() for p in slo.key.split("_")) + suffix
    horizon = "1h" if severity == "page" else "1d"
    spend = "2% in 1 hour or 5% in 6 hours" if severity == "page" else "10% in 1 day or 10% in 3 days"
    # Synthetic series: the raw counters the recording rules read, 1 sample a minute. The
    # recording rules are in the same file, so promtool evaluates them first.
    fire, silent = burn_cases(slo, severity)
    return Alert(
        name=name,
        any_of=any_of,
        for_=for_,
        severity=severity,
        summary=f"flight-counter {slo.title} SLO: error budget burning fast ({severity})"
        if severity == "page"
        else f"flight-counter {slo.title} SLO: error budget burning ({severity})",
        description=(
            f"In namespace {{{{ $labels.namespace }}}}, the {slo.title} SLO ({slo.objective * 100:g}% over 30 days) "
            f"is spending its error budget at a rate that would use {spend} "
            f"(error ratio over the last {horizon} above {burn_floor(pairs, slo)}, against a budget of "
            f"{slo.budget * 100:g}%)."
        ),
        anchor=slo.anchor,
        fire=fire,
        silent=silent,
    )


def burn_cases(slo: Slo, severity: str) -> tuple[Case, Case]:
    # Per minute: 600 events. Bad share: 20% (breaks every window of every rate) or 0.01%
    # (well inside the budget). The ticket alert needs its long windows filled: 3d of
    # samples at 10m steps.
    step, n, at = ("1m", 120, "100m") if severity == "page" else ("10m", 200, "1600m")
    per_step = 600 if step == "1m" else 6000

    def series(bad_share: float) -> dict[str, str]:
        bad = per_step * bad_share
        good = per_step - bad
        if slo.key == "post_availability":
            return {
                f'{REQ}{{{NSPOD},method="POST",path="/transactions/{{route}}",status="200",client="app"}}': f"0+{fmt(good)}x{n}",
                f'{REQ}{{{NSPOD},method="POST",path="/transactions/{{route}}",status="503",client="app"}}': f"0+{fmt(bad)}x{n}",
            }
        if slo.key == "post_latency":
            lbl = f'{NSPOD},method="POST",path="/transactions/{{route}}",status="200",client="app"'
            return {
                f'{DUR}_bucket{{{lbl},le="0.25"}}': f"0+{fmt(good)}x{n}",
                f'{DUR}_bucket{{{lbl},le="+Inf"}}': f"0+{per_step}x{n}",
                f"{DUR}_count{{{lbl}}}": f"0+{per_step}x{n}",
            }
        lbl = f'{NSPOD},method="GET",path="/transactions/{{route}}/daily",status="200",client="app"'
        return {
            f'{DUR}_bucket{{{lbl},le="1"}}': f"0+{fmt(good)}x{n}",
            f'{DUR}_bucket{{{lbl},le="+Inf"}}': f"0+{per_step}x{n}",
            f"{DUR}_count{{{lbl}}}": f"0+{per_step}x{n}",
        }

    labels = {"namespace": "flight-counter", "severity": severity, "slo": slo.key}
    return Case(series(0.2), at, labels), Case(series(0.0001), at, None)


def flaps(n: int, period: int, down: int, start: int = 0) -> list[int]:
    """A counter of 503 answers to /readyz, one sample a minute: 12 more each minute the pod is
    not ready (minutes start+k*period .. +down), flat otherwise."""
    out, total = [], 0
    for minute in range(n):
        if minute >= start and (minute - start) % period < down:
            total += 12
        out.append(total)
    return out


def values(samples: list[int]) -> str:
    return " ".join(str(v) for v in samples)


def alerts() -> list[Alert]:
    out = [
        burn_alert(slo, severity, suffix, pairs, for_)
        for slo in SLOS
        for severity, suffix, pairs, for_ in BURN_ALERTS
    ]
    for a in out:
        a.extra_labels["slo"] = next(s.key for s in SLOS if a.anchor == s.anchor)

    ready_ratio = (
        f'sum by (namespace, pod) (rate({REQ}{{path="/readyz",status="200"}}[2m]))'
        f' / sum by (namespace, pod) (rate({REQ}{{path="/readyz"}}[2m]))'
    )

    def readyz(status):
        return f'{REQ}{{{NSPOD},method="GET",path="/readyz",status="{status}",client="anonymous"}}'

    out.append(
        Alert(
            name="FlightCounterReadinessFlapping",
            # How often, over 30 minutes sampled each minute, the pod went from answering every
            # readiness probe 200 to answering some 503, or back.
            any_of=[[Cond(f"changes(({ready_ratio} < bool 1)[30m:1m])", ">=", "4")]],
            for_="0m",
            severity="warning",
            summary="flight-counter pod {{ $labels.pod }} keeps turning not ready and ready again",
            description=(
                "Pod {{ $labels.pod }} in {{ $labels.namespace }} changed readiness at least 4 times in 30 minutes "
                "(its /readyz answers alternate between 200 and 503): the load balancer keeps adding and removing it."
            ),
            anchor="alert-readiness-flapping",
            # Probes every 5s (12 a minute). Flapping: not ready 4 minutes of every 9. Healthy: one
            # not-ready spell (a store outage) in the 30 minutes, which is not flapping.
            fire=Case(
                {readyz("200"): "0+12x60", readyz("503"): values(flaps(61, period=9, down=4))},
                "58m",
                {"namespace": "flight-counter", "pod": "flight-counter-7d9f8-abcde", "severity": "warning"},
            ),
            silent=Case(
                {readyz("200"): "0+12x60", readyz("503"): values(flaps(61, period=61, down=4, start=40))},
                "58m",
                None,
            ),
        )
    )

    def commits(outcome):
        return f'flight_counter_store_commits_total{{{NSPOD},outcome="{outcome}"}}'

    out.append(
        Alert(
            name="FlightCounterStoreCommitErrors",
            any_of=[
                [
                    Cond(
                        'sum by (namespace) (rate(flight_counter_store_commits_total{outcome="error"}[5m]))'
                        " / sum by (namespace) (rate(flight_counter_store_commits_total[5m]))",
                        ">",
                        "0.01",
                    )
                ]
            ],
            for_="5m",
            severity="critical",
            summary="flight-counter store commits are failing",
            description=(
                "More than 1% of store commits in {{ $labels.namespace }} failed over 5 minutes, for 5 minutes; "
                "every POST in a failed commit was answered 503 and nothing of it was recorded."
            ),
            anchor="alert-store-commit-errors",
            fire=Case(
                {commits("ok"): "0+100x30", commits("error"): "0+10x30", commits("throttled"): "0+0x30"},
                "20m",
                {"namespace": "flight-counter", "severity": "critical"},
            ),
            silent=Case(
                {
                    commits("ok"): "0+100x30",
                    commits("error"): "0+0x25 1+0x5",
                    commits("throttled"): "0+50x30",
                },
                "20m",
                None,
            ),
        )
    )

    def calls(outcome):
        return f'flight_counter_dynamodb_calls_total{{{NSPOD},operation="UpdateItem",outcome="{outcome}"}}'

    def share(outcome):
        return (
            f'1 - (sum by (namespace) (rate(flight_counter_dynamodb_calls_total{{outcome!="{outcome}"}}[5m]))'
            " / sum by (namespace) (rate(flight_counter_dynamodb_calls_total[5m])))"
        )

    out.append(
        Alert(
            name="FlightCounterDynamoDBThrottling",
            any_of=[[Cond(share("throttled"), ">", "0.1")]],
            for_="10m",
            severity="warning",
            summary="DynamoDB is throttling flight-counter",
            description=(
                "More than 10% of DynamoDB calls from {{ $labels.namespace }} were throttled, for 10 minutes. "
                "The service paces the throttled routes (flight_counter_store_paced_routes) instead of failing them, "
                "so POSTs on hot routes wait longer."
            ),
            anchor="alert-dynamodb-throttling",
            fire=Case(
                {calls("ok"): "0+100x30", calls("throttled"): "0+40x30", calls("error"): "0+0x30"},
                "25m",
                {"namespace": "flight-counter", "severity": "warning"},
            ),
            silent=Case(
                {calls("ok"): "0+100x30", calls("throttled"): "0+2x30", calls("error"): "0+0x30"}, "25m", None
            ),
        )
    )
    out.append(
        Alert(
            name="FlightCounterDynamoDBErrors",
            any_of=[[Cond(share("error"), ">", "0.05")]],
            for_="5m",
            severity="critical",
            summary="DynamoDB calls from flight-counter are failing",
            description=(
                "More than 5% of DynamoDB calls from {{ $labels.namespace }} failed (not throttled: "
                "refused, timed out or unreachable) over 5 minutes."
            ),
            anchor="alert-dynamodb-errors",
            fire=Case(
                {calls("ok"): "0+100x30", calls("throttled"): "0+0x30", calls("error"): "0+20x30"},
                "20m",
                {"namespace": "flight-counter", "severity": "critical"},
            ),
            silent=Case(
                {calls("ok"): "0+100x30", calls("throttled"): "0+30x30", calls("error"): "0+1x30"},
                "20m",
                None,
            ),
        )
    )

    conflicts = "flight_counter_idempotency_conflicts_total"
    posts = f'{REQ}{{{NSPOD},method="POST",path="/transactions/{{route}}",status="200",client="app"}}'
    out.append(
        Alert(
            name="FlightCounterIdempotencyConflictsSpiking",
            any_of=[
                [
                    Cond(
                        f"sum by (namespace) (rate({conflicts}[10m]))"
                        f" / sum by (namespace) (rate({REQ}{{{POST}}}[10m]))",
                        ">",
                        "0.01",
                    ),
                    Cond(f"sum by (namespace) (rate({conflicts}[10m]))", ">", "0.05"),
                ]
            ],
            for_="10m",
            severity="warning",
            summary="flight-counter is refusing many POSTs for reused idempotency keys",
            description=(
                "{{ $labels.namespace }} refused more than 1% of POSTs (and over 3 a minute) with 422 for 10 minutes: "
                "their Idempotency-Key was first used with another route. A client is reusing keys."
            ),
            anchor="alert-idempotency-conflicts",
            fire=Case(
                {f"{conflicts}{{{NSPOD}}}": "0+30x40", posts: "0+600x40"},
                "30m",
                {"namespace": "flight-counter", "severity": "warning"},
            ),
            silent=Case({f"{conflicts}{{{NSPOD}}}": "0+1x40", posts: "0+600x40"}, "30m", None),
        )
    )

    timeouts = "flight_counter_http_connection_timeouts_total"
    out.append(
        Alert(
            name="FlightCounterConnectionTimeoutsSpiking",
            any_of=[[Cond(f'sum by (namespace) (rate({timeouts}{{deadline="request"}}[10m]))', ">", "0.1")]],
            for_="10m",
            severity="warning",
            summary="flight-counter is cutting off many slow requests",
            description=(
                "{{ $labels.namespace }} closed more than 6 connections a minute, for 10 minutes, because "
                "a request did not arrive in full within the request timeout (answered 408)."
            ),
            anchor="alert-connection-timeouts",
            fire=Case(
                {
                    f'{timeouts}{{{NSPOD},deadline="request"}}': "0+30x40",
                    f'{timeouts}{{{NSPOD},deadline="idle"}}': "0+5x40",
                },
                "30m",
                {"namespace": "flight-counter", "severity": "warning"},
            ),
            silent=Case(
                {
                    f'{timeouts}{{{NSPOD},deadline="request"}}': "0+1x40",
                    f'{timeouts}{{{NSPOD},deadline="idle"}}': "0+500x40",
                },
                "30m",
                None,
            ),
        )
    )

    keys_file = "flight_counter_auth_keys_file_errors"
    out.append(
        Alert(
            name="FlightCounterApiKeysFileErrors",
            any_of=[[Cond(f"max by (namespace, pod) ({keys_file})", ">", "0")]],
            for_="5m",
            severity="warning",
            summary="flight-counter pod {{ $labels.pod }} refuses lines of its API keys file",
            description=(
                "Pod {{ $labels.pod }} in {{ $labels.namespace }} has refused lines of its API keys file "
                "for 5 minutes (flight_counter_auth_keys_file_errors above 0): each refused line grants "
                "nothing, so the keys on them are turned away. A value of 1 can also mean the file cannot "
                "be read, and then no key is accepted."
            ),
            anchor="alert-api-keys-file-errors",
            fire=Case(
                {f"{keys_file}{{{NSPOD}}}": "0x5 1x20"},
                "15m",
                {"namespace": "flight-counter", "pod": "flight-counter-7d9f8-abcde", "severity": "warning"},
            ),
            silent=Case({f"{keys_file}{{{NSPOD}}}": "0x10 1x2 0x10"}, "15m", None),
        )
    )

    restarts = "kube_pod_container_status_restarts_total"
    ksm = f'{restarts}{{namespace="flight-counter",pod="flight-counter-7d9f8-abcde",container="flight-counter",job="kube-state-metrics"}}'
    out.append(
        Alert(
            name="FlightCounterPodRestarting",
            any_of=[
                [
                    Cond(
                        f'sum by (namespace, pod) (increase({restarts}{{container="flight-counter"}}[30m]))',
                        ">=",
                        "2",
                    )
                ]
            ],
            for_="0m",
            severity="warning",
            summary="flight-counter pod {{ $labels.pod }} is restarting",
            description=(
                "Container flight-counter of pod {{ $labels.pod }} in {{ $labels.namespace }} restarted "
                "at least twice in 30 minutes. (Needs kube-state-metrics.)"
            ),
            anchor="alert-pod-restarting",
            needs="kube-state-metrics (kube_pod_container_status_restarts_total)",
            fire=Case(
                {ksm: "0+0x10 1+0x10 2+0x10 3+0x10"},
                "35m",
                {"namespace": "flight-counter", "pod": "flight-counter-7d9f8-abcde", "severity": "warning"},
            ),
            silent=Case({ksm: "0+0x20 1+0x40"}, "58m", None),
        )
    )
    return out


def recording_rules() -> list[dict]:
    return [
        {"record": slo.record(w), "expr": slo.error_ratio(w), "labels": {"slo": slo.key}}
        for slo in SLOS
        for w in WINDOWS
    ]


def annotations(a: Alert) -> dict[str, str]:
    return {"summary": a.summary, "description": a.description, "runbook_url": f"{RUNBOOK_BASE}#{a.anchor}"}


def rule_groups() -> list[dict]:
    def alert_rule(a: Alert) -> dict:
        rule = {"alert": a.name, "expr": a.expr()}
        if a.for_ != "0m":
            rule["for"] = a.for_
        rule["labels"] = {"severity": a.severity, **a.extra_labels}
        rule["annotations"] = annotations(a)
        return rule

    all_alerts = alerts()
    burn = [a for a in all_alerts if a.extra_labels.get("slo")]
    ops = [a for a in all_alerts if not a.extra_labels.get("slo")]
    return [
        {"name": "flight-counter-slo-recording", "rules": recording_rules()},
        {"name": "flight-counter-slo-alerts", "rules": [alert_rule(a) for a in burn]},
        {"name": "flight-counter-alerts", "rules": [alert_rule(a) for a in ops]},
    ]


def render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def unit_tests(rules_file: str, slow: bool) -> dict:
    """promtool tests of every alert; `slow`: those of the ticket alerts (3-day windows), at a
    10-minute evaluation interval, apart so that the others run at 1 minute."""
    tests = []
    for a in alerts():
        for case, what in ((a.fire, "fires"), (a.silent, "stays silent")):
            step = "10m" if a.severity == "ticket" else "1m"
            if (a.severity == "ticket") != slow:
                continue
            exp = []
            if case.fires_with is not None:
                labels = dict(case.fires_with)
                labels.update(a.extra_labels)
                exp.append(
                    {
                        "exp_labels": dict(sorted(labels.items())),
                        "exp_annotations": {k: render(v, labels) for k, v in annotations(a).items()},
                    }
                )
            tests.append(
                {
                    "name": f"{a.name} {what}" + (f" (series of {a.needs})" if a.needs else ""),
                    "interval": step,
                    "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                    "alert_rule_test": [{"eval_time": case.at, "alertname": a.name, "exp_alerts": exp}],
                }
            )
    # Recording rules first at each evaluation: the alerts read what they just recorded (at a
    # 10-minute interval, a value from the step before is past the 5-minute lookback).
    order = [g["name"] for g in rule_groups()]
    return {
        "rule_files": [rules_file],
        "evaluation_interval": "10m" if slow else "1m",
        "group_eval_order": order,
        "tests": tests,
    }
