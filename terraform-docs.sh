#!/usr/bin/env bash
# Regenerate the Inputs/Outputs/... section of every Terraform root's README.md
# (between <!-- BEGIN_TF_DOCS --> and <!-- END_TF_DOCS -->; the hand-written
# text above the markers is kept).
#
#   ./terraform-docs.sh           rewrite stale READMEs
#   ./terraform-docs.sh --check   exit 1 if any README is stale
#
# Uses terraform-docs when it is on PATH, otherwise the project's generator
# (.ci/infra/tfinfra.py, needs python-hcl2 and PyYAML: it runs from the
# virtualenv that .ci/check-infra.sh creates, or any python3 that has them).
# TFDOCS_IMPL=builtin forces the project's generator.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

ROOTS=(terraform-backends dynamodb ecr-repo eks-cluster)
CONFIG="$PWD/.terraform-docs.yml"

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [[ "${TFDOCS_IMPL:-auto}" != builtin ]] && command -v terraform-docs >/dev/null 2>&1; then
  status=0
  for root in "${ROOTS[@]}"; do
    if $check; then
      terraform-docs --config "$CONFIG" --output-check "$root" || status=1
    else
      terraform-docs --config "$CONFIG" "$root"
    fi
  done
  exit "$status"
fi

python=""
for candidate in "${FLIGHT_COUNTER_INFRA_VENV:-${TMPDIR:-/tmp}/flight-counter-infra-venv}/bin/python" python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import hcl2, yaml' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "terraform-docs.sh: neither terraform-docs nor a python3 with python-hcl2 and PyYAML found;" >&2
  echo "run .ci/check-infra.sh once (it builds the virtualenv) or pip install -r .ci/infra/requirements.txt" >&2
  exit 2
fi

if $check; then
  exec "$python" .ci/infra/tfinfra.py docs --check "${ROOTS[@]}"
fi
exec "$python" .ci/infra/tfinfra.py docs "${ROOTS[@]}"
