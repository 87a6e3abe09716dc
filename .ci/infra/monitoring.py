"""Offline checks of the optional monitoring component (kubernetes/components/monitoring),
rendered with the base through kubernetes/overlays/monitoring.

    python monitoring.py check RENDERED K8S_OUT

- every PodMonitor and PrometheusRule validates against its vendored CRD schema
  (.ci/infra/schemas, see its README), and a PodMonitor with a misspelt field does not (so the
  schema is known to be strict); the other objects are written to K8S_OUT for the Kubernetes
  schema check;
- the PrometheusRule carries exactly the groups of the plain rules file
  (monitoring/prometheus/flight-counter.rules.yml), rule group names are unique, every alert
  has a summary, a description and a runbook_url whose anchor is a heading of
  docs/operations.md;
- /metrics is served on a listener of its own (FLIGHT_COUNTER_METRICS_BIND in the ConfigMap, a
  port other than FLIGHT_COUNTER_BIND's): the PodMonitor scrapes the container port with that
  number by name, the scrape annotations name the same number and /metrics, a NetworkPolicy lets
  the monitoring namespace in on it, and no rule lets anything else in on it.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCHEMAS = {
    "PodMonitor": HERE / "schemas" / "podmonitor-monitoring.coreos.com-v1.json",
    "PrometheusRule": HERE / "schemas" / "prometheusrule-monitoring.coreos.com-v1.json",
}
RULES_FILE = REPO / "monitoring" / "prometheus" / "flight-counter.rules.yml"
OPERATIONS = REPO / "docs" / "operations.md"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def validator(kind: str):
    import json

    schema = json.loads(SCHEMAS[kind].read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def check(rendered: Path, k8s_out: Path) -> int:
    failures: list[str] = []
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    crd_docs = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    plain = [d for d in docs if d not in crd_docs]
    k8s_out.write_text(yaml.safe_dump_all(plain, sort_keys=False))

    kinds = sorted(d["kind"] for d in crd_docs)
    if kinds != ["PodMonitor", "PrometheusRule"]:
        failures.append(f"expected one PodMonitor and one PrometheusRule, found {kinds}")
    for d in crd_docs:
        if d["kind"] not in SCHEMAS:
            failures.append(f"no vendored schema for {d['kind']}")
            continue
        errors = sorted(validator(d["kind"]).iter_errors(d), key=lambda e: list(e.path))
        for e in errors:
            failures.append(f"{d['kind']}/{d['metadata']['name']}: {'/'.join(map(str, e.path))}: {e.message}")
        print(
            f"{d['kind']}/{d['metadata']['name']}: {'valid' if not errors else 'INVALID'} against {SCHEMAS[d['kind']].name}"
        )

    # The schema must refuse what the API server's strict validation refuses.
    pm = next((d for d in crd_docs if d["kind"] == "PodMonitor"), None)
    if pm:
        broken = copy.deepcopy(pm)
        broken["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
        if validator("PodMonitor").is_valid(broken):
            failures.append("the PodMonitor schema accepts a misspelt field (intervall)")
        broken = copy.deepcopy(pm)
        broken["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
        if validator("PodMonitor").is_valid(broken):
            failures.append("the PodMonitor schema accepts a malformed duration")

    # The PrometheusRule and the plain rules file hold the same groups.
    pr = next((d for d in crd_docs if d["kind"] == "PrometheusRule"), None)
    plain_groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    if pr and pr["spec"]["groups"] != plain_groups:
        failures.append(f"PrometheusRule groups differ from {RULES_FILE.relative_to(REPO)}")
    names = [g["name"] for g in plain_groups]
    if len(set(names)) != len(names):
        failures.append(f"rule group names are not unique: {names}")

    anchors = {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", OPERATIONS.read_text(), re.M)}
    alerts = [r for g in plain_groups for r in g["rules"] if "alert" in r]
    for r in alerts:
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                failures.append(f"alert {r['alert']} has no {key}")
        url = ann.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if not page.endswith("docs/operations.md") or anchor not in anchors:
            failures.append(f"alert {r['alert']}: runbook_url {url} is not a heading of docs/operations.md")
    print(f"{len(alerts)} alerts, each with a summary, a description and a runbook in docs/operations.md")

    dep = next((d for d in plain if d["kind"] == "Deployment"), {})
    pod = dep.get("spec", {}).get("template", {})
    container = (pod.get("spec", {}).get("containers") or [{}])[0]
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    env = next((d.get("data", {}) for d in plain if d["kind"] == "ConfigMap"), {})

    def bind_port(key: str) -> int | None:
        m = re.fullmatch(r".*:(\d+)", env.get(key, ""))
        return int(m.group(1)) if m else None

    api_port, metrics_port = bind_port("FLIGHT_COUNTER_BIND"), bind_port("FLIGHT_COUNTER_METRICS_BIND")
    if metrics_port is None or metrics_port == api_port:
        failures.append(
            f"FLIGHT_COUNTER_METRICS_BIND must put /metrics on a port other than the API's ({env})"
        )
    metrics_names = {name for name, number in ports.items() if number == metrics_port}
    if len(metrics_names) != 1:
        failures.append(f"the container must name the metrics port {metrics_port} once (ports {ports})")
    if pm:
        for ep in pm["spec"].get("podMetricsEndpoints", []):
            if ep.get("port") not in metrics_names:
                failures.append(
                    f"PodMonitor scrapes port {ep.get('port')!r}, not the metrics port {sorted(metrics_names)} ({metrics_port})"
                )
            if ep.get("path", "/metrics") != "/metrics":
                failures.append("PodMonitor must scrape /metrics")
        pod_labels = pod.get("metadata", {}).get("labels", {})
        wanted = pm["spec"]["selector"].get("matchLabels", {})
        if any(pod_labels.get(k) != v for k, v in wanted.items()):
            failures.append("PodMonitor selector does not match the Deployment's pod labels")
    ann = pod.get("metadata", {}).get("annotations", {})
    if (
        ann.get("prometheus.io/scrape") != "true"
        or ann.get("prometheus.io/path") != "/metrics"
        or ann.get("prometheus.io/port") != str(metrics_port)
    ):
        failures.append(
            f"pod template needs prometheus.io scrape/path annotations and port {metrics_port}, the metrics port (has {ann})"
        )
    metrics = metrics_names | {metrics_port}
    let_in = False
    for np in (d for d in plain if d["kind"] == "NetworkPolicy"):
        for rule in np["spec"].get("ingress", []):
            sources = rule.get("from", [])
            only_monitoring = bool(sources) and all(
                set(f) == {"namespaceSelector"}
                and f["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                == "monitoring"
                for f in sources
            )
            rule_ports = [p.get("port") for p in rule.get("ports", [])]
            on_port = not rule_ports or any(p in metrics for p in rule_ports)
            if on_port and not only_monitoring:
                failures.append(
                    f"NetworkPolicy {np['metadata']['name']} lets {sources or 'anyone'} reach the metrics port; only the monitoring namespace may"
                )
            let_in |= only_monitoring and bool(rule_ports) and on_port
    if not let_in:
        failures.append("no NetworkPolicy lets the monitoring namespace reach the metrics port")

    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] != "check":
        print(__doc__, file=sys.stderr)
        return 2
    return check(Path(sys.argv[2]), Path(sys.argv[3]))


if __name__ == "__main__":
    sys.exit(main())
