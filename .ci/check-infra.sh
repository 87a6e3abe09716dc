#!/usr/bin/env bash
# Static checks of flight-counter's infrastructure code. Neither Terraform nor
# a cluster is needed: everything that can be checked offline is.
#
#   bash .ci/check-infra.sh
#
# Installs its tools (from PyPI, plus python3-venv from Debian if missing)
# into a virtualenv outside the repository, reused while
# .ci/infra/requirements.txt is unchanged:
#   FLIGHT_COUNTER_INFRA_VENV  (default: ${TMPDIR:-/tmp}/flight-counter-infra-venv)
# Prints PASS/FAIL per check and exits non-zero if any check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

ROOTS=(terraform-backends dynamodb ecr-repo eks-cluster)
VENV="${FLIGHT_COUNTER_INFRA_VENV:-${TMPDIR:-/tmp}/flight-counter-infra-venv}"
REQUIREMENTS="$REPO/.ci/infra/requirements.txt"
KUBERNETES_VERSION="$(sed -n 's/^KUBERNETES_VERSION=//p' "$REPO/.ci/infra/versions.env")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flight-counter-infra.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

started=$SECONDS
passed=0
failed=0
failed_names=()

log() { printf '%s\n' "$*"; }

# run NAME COMMAND...: run one check, print PASS/FAIL, show its output on failure.
run() {
  local name="$1"; shift
  local out="$WORK/${name//[^A-Za-z0-9_.-]/_}.log"
  local t0=$SECONDS
  if "$@" >"$out" 2>&1; then
    passed=$((passed + 1))
    log "PASS  $name ($((SECONDS - t0))s)"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    log "FAIL  $name ($((SECONDS - t0))s)"
    sed -e 's/^/      | /' "$out" | tail -n 60
  fi
}

# ---------------------------------------------------------------------------
# Tools

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

python_bin="${PYTHON:-python3}"
if ! command -v "$python_bin" >/dev/null; then
  log "FAIL  setup: python3 not found"; exit 1
fi

stamp_want="$(sha256sum <"$REQUIREMENTS" | cut -d' ' -f1) $("$python_bin" -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp_want" ]]; then
  log "....  setup: creating $VENV"
  rm -rf "$VENV"
  if ! "$python_bin" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 ships venv separately.
    rm -rf "$VENV"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$python_bin" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$stamp_want" >"$VENV/.stamp"
fi
export PATH="$VENV/bin:$PATH"
export FLIGHT_COUNTER_INFRA_VENV="$VENV"
PY="$VENV/bin/python"
TFINFRA="$REPO/.ci/infra/tfinfra.py"
log "PASS  setup: tools in $VENV ($((SECONDS - started))s)"

# checkov: offline. No external module downloads, no platform policies or
# guideline mappings, no update check. Hidden directories are not scanned.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true
CHECKOV=(checkov --skip-download --download-external-modules false --compact --quiet)

# ---------------------------------------------------------------------------
# Terraform

run "terraform: every .tf parses and project invariants hold" \
  "$PY" "$TFINFRA" invariants "${ROOTS[@]}"

if command -v terraform >/dev/null; then
  run "terraform: fmt" env TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -diff -recursive "${ROOTS[@]}"
else
  log "SKIP  terraform: fmt (terraform not installed)"
fi

for root in "${ROOTS[@]}"; do
  run "checkov: terraform $root" "${CHECKOV[@]}" --framework terraform -d "$root"
done

untracked_state() {
  # State, generated backend settings, variable files with real values and
  # local override files stay out of git.
  local found
  found="$(git ls-files -- '*.tfstate' '*.tfstate.*' '*.tfvars' '*.tfplan' '*backend.hcl' '*_override.tf' '*.terraform/*' || true)"
  [[ -z "$found" ]] || { echo "committed but must not be:"; echo "$found"; return 1; }
}
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  run "terraform: no state, backend.hcl, tfvars or override files in git" untracked_state
fi

run "terraform-docs: READMEs up to date (./terraform-docs.sh --check)" ./terraform-docs.sh --check
run "terraform-docs: READMEs list exactly the variables and outputs" "$PY" "$TFINFRA" readme "${ROOTS[@]}"

# ---------------------------------------------------------------------------
# Kubernetes

RENDERED="$WORK/kubernetes.yaml"
render() { kubectl kustomize kubernetes/ >"$RENDERED"; }
run "kubernetes: kubectl kustomize renders" render
if [[ -s "$RENDERED" ]]; then
  run "kubernetes: schemas of Kubernetes $KUBERNETES_VERSION (strict)" \
    kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$RENDERED"
  run "kubernetes: manifests agree with Terraform and the service" \
    "$PY" "$TFINFRA" manifests "$RENDERED" --kubernetes-version "$KUBERNETES_VERSION"
  run "checkov: kubernetes (rendered)" "${CHECKOV[@]}" --framework kubernetes -f "$RENDERED"
else
  failed=$((failed + 3))
  failed_names+=("kubernetes checks (nothing rendered)")
  log "FAIL  kubernetes: schema, consistency and checkov checks (nothing rendered)"
fi

# The optional monitoring component (Prometheus Operator objects), rendered with the base.
MONITORING="$WORK/monitoring.yaml"
MONITORING_K8S="$WORK/monitoring-k8s.yaml"
render_monitoring() { kubectl kustomize monitoring/kustomize >"$MONITORING"; }
run "kubernetes: monitoring component renders (kubectl kustomize monitoring/kustomize)" render_monitoring
if [[ -s "$MONITORING" ]]; then
  run "kubernetes: monitoring component: PodMonitor and PrometheusRule against their CRD schemas, rules, runbooks, port and NetworkPolicy" \
    "$PY" "$REPO/.ci/infra/monitoring.py" check "$MONITORING" "$MONITORING_K8S"
  run "kubernetes: monitoring component: the other objects against Kubernetes $KUBERNETES_VERSION (strict)" \
    kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$MONITORING_K8S"
else
  failed=$((failed + 2))
  failed_names+=("monitoring component checks (nothing rendered)")
  log "FAIL  kubernetes: monitoring component checks (nothing rendered)"
fi

# ---------------------------------------------------------------------------
# Container image

run "hadolint: app/Dockerfile" hadolint app/Dockerfile
run "checkov: dockerfile" "${CHECKOV[@]}" --framework dockerfile -f app/Dockerfile
dockerignore() {
  local missing=0 entry
  for entry in target/ .git/ '*.tfstate' '**/.terraform/' .env '**/*.pem'; do
    grep -qxF -- "$entry" .dockerignore || { echo ".dockerignore lacks $entry"; missing=1; }
  done
  return "$missing"
}
run "docker: .dockerignore keeps build output, git, secrets and state out" dockerignore

# ---------------------------------------------------------------------------
# CI workflows and scripts

mapfile -t workflows < <(find .github/workflows -name '*.yml' -o -name '*.yaml' | sort)
run "github actions: workflows match the schema" \
  check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
pinned_actions() {
  # Every action is pinned to a full version (vX.Y.Z) or a commit SHA.
  ! grep -nE '^\s*-?\s*uses:\s*[^ ]+@' "${workflows[@]}" \
    | grep -vE '@(v[0-9]+\.[0-9]+\.[0-9]+|[0-9a-f]{40})\s*(#.*)?$'
}
run "github actions: actions pinned to versions" pinned_actions
run "shellcheck: infrastructure scripts" shellcheck terraform-docs.sh .ci/check-infra.sh

# ---------------------------------------------------------------------------

log ""
if ((failed)); then
  log "Failed checks:"
  printf '  - %s\n' "${failed_names[@]}"
fi
log "check-infra: $passed passed, $failed failed ($((SECONDS - started))s)"
((failed == 0))
