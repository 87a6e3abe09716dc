#!/usr/bin/env bash
# Static checks of flight-counter's infrastructure code, offline: no cloud
# account, no cluster, no provider or module downloads. Terraform itself
# (>= 1.11, on PATH) is required: its fmt and validate checks fail, never
# skip, without it (see docs/terraform-ci.md).
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

# run [--show] NAME COMMAND...: run one check, print PASS/FAIL, show its
# output on failure (and on success too with --show).
run() {
  local show=false
  if [[ "$1" == --show ]]; then show=true; shift; fi
  local name="$1"; shift
  local out="$WORK/${name//[^A-Za-z0-9_.-]/_}.log"
  local t0=$SECONDS
  if "$@" >"$out" 2>&1; then
    passed=$((passed + 1))
    log "PASS  $name ($((SECONDS - t0))s)"
    if $show; then sed -e 's/^/      | /' "$out" | tail -n 60; fi
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
# The review's findings (token data sources, timestamps, list positions as
# keys, IRSA, KMS administrators, AMI, add-on ordering, Pod Identity trust,
# account root trust, PutItem keys, empty required lists, the NodePool), all
# put back into a fixture: each must be refused.
run --show "terraform: the invariants refuse each finding of the review (fixture review-mistakes)" \
  "$PY" "$TFINFRA" review-fixtures .ci/infra/testdata/review-mistakes

# What `terraform validate` cannot see before init (it stops at the first
# provider or module it would download): addresses declared twice, var.,
# local., module., data. and resource references that resolve to nothing,
# required_version older than 1.11. Each fixture holds one such mistake and
# must be refused.
run --show "terraform: no address declared twice, every reference declared, required_version >= 1.11 (tfinfra refs)" \
  "$PY" "$TFINFRA" refs "${ROOTS[@]}"
for fixture in .ci/infra/testdata/refs-*/; do
  fixture="${fixture%/}"
  run --show "terraform: tfinfra refs refuses the fixture ${fixture##*/}" "$PY" "$TFINFRA" refs-fixtures "$fixture"
done

# Terraform itself, the binary on the machine (CI's machines have it at
# /usr/local/bin/terraform). Without it these fail: they are never skipped.
if command -v terraform >/dev/null; then
  run "terraform: fmt -check -recursive" env TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -diff -recursive "${ROOTS[@]}"
  # Before init: every error but "Missing required provider" and "Module not
  # installed" (what a download would fix) fails. Prints what each root got.
  run --show "terraform: validate in every root, before init (only download errors allowed)" \
    "$PY" "$TFINFRA" validate "${ROOTS[@]}"
  run --show "terraform: validate refuses a root with every kind of block declared twice (fixture refs-duplicate)" \
    "$PY" "$TFINFRA" validate --expect-fail .ci/infra/testdata/refs-duplicate
  # Providers cannot be downloaded here. Where the machine has a filesystem
  # mirror, the roots it can serve get a full validate against it.
  TF_MIRROR="${FLIGHT_COUNTER_TF_MIRROR:-/opt/tf-plugins}"
  if compgen -G "$TF_MIRROR/*/*/*/*/linux_amd64" >/dev/null; then
    run --show "terraform: full validate against the provider mirror in $TF_MIRROR (roots it can serve)" \
      "$PY" "$TFINFRA" validate-mirror --mirror "$TF_MIRROR" "${ROOTS[@]}"
  else
    log "SKIP  terraform: full validate against a provider mirror (no mirror at $TF_MIRROR; see docs/terraform-ci.md)"
  fi
else
  for check in "fmt -check -recursive" "validate in every root" "validate refuses the duplicate fixture"; do
    failed=$((failed + 1))
    failed_names+=("terraform: $check (terraform not on PATH)")
    log "FAIL  terraform: $check: terraform is not on PATH (Terraform >= 1.11 is required; see docs/terraform-ci.md)"
  done
fi

for root in "${ROOTS[@]}"; do
  run "checkov: terraform $root" "${CHECKOV[@]}" --framework terraform -d "$root"
done

untracked_state() {
  # State, generated backend settings, variable files with real values and
  # local override files stay out of git.
  local found
  found="$(git ls-files -- '*.tfstate' '*.tfstate.*' '*.tfvars' '*.tfvars.json' '*.tfplan' '*backend.hcl' '*_override.tf' '*_override.tf.json' '*.terraform/*' || true)"
  [[ -z "$found" ]] || { echo "committed but must not be:"; echo "$found"; return 1; }
}
ignored_by_git() {
  # What the guide writes (backend.hcl), variable files and local overrides
  # are ignored, so a `git add -A` cannot commit them.
  local path missing=0
  for path in backend.hcl eks-cluster/terraform.tfvars dynamodb/prod.tfvars terraform-backends/backend_override.tf \
              eks-cluster/x_override.tf.json dynamodb/terraform.tfstate eks-cluster/.terraform/x; do
    git check-ignore -q --no-index "$path" || { echo "not ignored: $path"; missing=1; }
  done
  return "$missing"
}
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  run "terraform: no state, backend.hcl, tfvars or override files in git" untracked_state
  run "terraform: .gitignore keeps backend.hcl, *.tfvars, *_override.tf and state out" ignored_by_git
fi

run "terraform-docs: READMEs up to date (./terraform-docs.sh --check)" ./terraform-docs.sh --check
run "terraform-docs: READMEs list exactly the variables and outputs" "$PY" "$TFINFRA" readme "${ROOTS[@]}"

# One escape rule for both generators: the project's generator reproduces
# terraform-docs' (escape: true) on descriptions with underscores, code,
# URLs, emphasis and pipes, checked against a README written the way
# terraform-docs writes it; where terraform-docs is installed, the two
# generators must also write byte-identical READMEs for every root.
DOCS_FIXTURE=.ci/infra/testdata/docs-escape
run "terraform-docs: escape rule on descriptions with underscores (project generator)" \
  "$PY" "$TFINFRA" docs --check "$DOCS_FIXTURE"
run "terraform-docs: escape rule unit cases" "$PY" "$TFINFRA" docs-selftest
if command -v terraform-docs >/dev/null; then
  docs_agree() {
    local copy="$WORK/docs-agree" root
    mkdir -p "$copy"
    for root in "${ROOTS[@]}" "$DOCS_FIXTURE"; do
      rm -rf "${copy:?}/x" && cp -r "$root" "$copy/x"
      terraform-docs --config "$REPO/.terraform-docs.yml" "$copy/x" >/dev/null
      cp "$copy/x/README.md" "$copy/real.md"
      "$PY" "$TFINFRA" docs "$copy/x" >/dev/null
      diff -u "$copy/real.md" "$copy/x/README.md" || return 1
    done
  }
  run "terraform-docs: real terraform-docs and the project's generator agree" docs_agree
else
  log "SKIP  terraform-docs: real terraform-docs not installed (no registry here ships it); the fixture above holds its output"
fi

# The optional monitoring component (Prometheus Operator objects), rendered with the base.
MONITORING="$WORK/monitoring.yaml"
MONITORING_K8S="$WORK/monitoring-k8s.yaml"
render_monitoring() { kubectl kustomize kubernetes/overlays/monitoring >"$MONITORING"; }
run "kubernetes: monitoring overlay renders (kubectl kustomize kubernetes/overlays/monitoring)" render_monitoring
if [[ -s "$MONITORING" ]]; then
  run "kubernetes: monitoring component: PodMonitor and PrometheusRule against their CRD schemas, rules, runbooks, metrics port and NetworkPolicy" \
    "$PY" "$REPO/.ci/infra/monitoring.py" check "$MONITORING" "$MONITORING_K8S"
  run "kubernetes: monitoring component: the other objects against Kubernetes $KUBERNETES_VERSION (strict)" \
    kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$MONITORING_K8S"
else
  failed=$((failed + 2))
  failed_names+=("monitoring component checks (nothing rendered)")
  log "FAIL  kubernetes: monitoring component checks (nothing rendered)"
fi

# ---------------------------------------------------------------------------
# Kubernetes: the two renderings that can be deployed, made by the deploy
# script itself (kubernetes/deploy.sh --render), as CI and people deploy them.

TEST_IMAGE=123456789012.dkr.ecr.us-east-1.amazonaws.com/flight-counter:0123456789abcdef0123456789abcdef01234567
TEST_CERT=arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-0b0a-4090-8070-605040302010
render() {
  local overlay="$1" out="$2"
  if [[ "$overlay" == default ]]; then
    IMAGE="$TEST_IMAGE" kubernetes/deploy.sh --render >"$out"
  else
    IMAGE="$TEST_IMAGE" OVERLAY=kubernetes/overlays/public ACM_CERTIFICATE_ARN="$TEST_CERT" \
      kubernetes/deploy.sh --render >"$out"
  fi
}
for overlay in default public; do
  RENDERED="$WORK/kubernetes-$overlay.yaml"
  run "kubernetes ($overlay): kubernetes/deploy.sh renders" render "$overlay" "$RENDERED"
  if [[ -s "$RENDERED" ]]; then
    run "kubernetes ($overlay): schemas of Kubernetes $KUBERNETES_VERSION (strict)" \
      kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$RENDERED"
    run "kubernetes ($overlay): no replicas, entry, timing, namespace; metrics port apart; agrees with Terraform (subnets, deploy Role)" \
      "$PY" "$TFINFRA" manifests "$RENDERED" --kubernetes-version "$KUBERNETES_VERSION" --overlay "$overlay"
    run --show "kubernetes ($overlay): the consistency check refuses each known mistake put into the rendering" \
      "$PY" "$TFINFRA" manifests "$RENDERED" --kubernetes-version "$KUBERNETES_VERSION" --overlay "$overlay" --selftest
    run "checkov: kubernetes ($overlay, rendered)" "${CHECKOV[@]}" --framework kubernetes -f "$RENDERED"
  else
    failed=$((failed + 4))
    failed_names+=("kubernetes ($overlay) checks (nothing rendered)")
    log "FAIL  kubernetes ($overlay): schema, consistency and checkov checks (nothing rendered)"
  fi
done
no_placeholder_deploy() {
  # The deploy script refuses the image placeholder and a public rendering
  # without a certificate.
  ! IMAGE=x/flight-counter:set-by-deploy kubernetes/deploy.sh --render >/dev/null 2>&1 &&
    ! IMAGE="$TEST_IMAGE" OVERLAY=kubernetes/overlays/public kubernetes/deploy.sh --render >/dev/null 2>&1
}
run "kubernetes: deploy.sh refuses the image placeholder and TLS without a certificate" no_placeholder_deploy

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
  # Every action is pinned to a full 40-hex commit SHA, with the version it
  # stands for in a comment (uses: owner/repo@<sha> # vX.Y.Z). Local actions
  # (./...) have nothing to pin.
  local bad
  bad="$(grep -nE '^\s*-?\s*uses:' "${workflows[@]}" \
    | grep -vE 'uses:\s*\./' \
    | grep -vE 'uses:\s*[^ @]+@[0-9a-f]{40}\s+#\s*v[0-9]+(\.[0-9]+){0,2}\s*$' || true)"
  [[ -z "$bad" ]] || { echo "not pinned by commit SHA with a version comment:"; echo "$bad"; return 1; }
}
run "github actions: actions pinned by commit SHA (40 hex) with the version in a comment" pinned_actions
run "shellcheck: infrastructure scripts" shellcheck terraform-docs.sh .ci/check-infra.sh kubernetes/deploy.sh

# ---------------------------------------------------------------------------

log ""
if ((failed)); then
  log "Failed checks:"
  printf '  - %s\n' "${failed_names[@]}"
fi
log "check-infra: $passed passed, $failed failed ($((SECONDS - started))s)"
((failed == 0))
