#!/usr/bin/env bash
# The one deploy path, for CI and people alike: renders a kustomization
# (kubernetes/base, or an overlay) with the image to run, applies it
# server-side, and waits for the rollout. Everything it applies is namespaced,
# so the CI deploy role (edit rights in the namespace) can apply all of it.
#
#   IMAGE=<repository_url>:<commit sha> kubernetes/deploy.sh            apply and wait
#   IMAGE=... kubernetes/deploy.sh --render                             print the manifests only
#
# Environment:
#   IMAGE                required: repository and tag (or @sha256 digest) to run
#   OVERLAY              kustomization to deploy (default kubernetes/base, the
#                        internal NLB; kubernetes/overlays/public for internet
#                        exposure with TLS)
#   LB_SOURCE_RANGES     comma-separated CIDRs allowed to reach the NLB
#                        (default: the kustomization's own)
#   ACM_CERTIFICATE_ARN  certificate for TLS on 443; required by overlays/public
#   ROLLOUT_TIMEOUT      default 10m
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
render_only=false
case "${1:-}" in
  --render) render_only=true ;;
  "") ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--render]" >&2; exit 2 ;;
esac

: "${IMAGE:?IMAGE must be set, e.g. <repository_url>:<commit sha>}"
overlay="${OVERLAY:-kubernetes/base}"
[[ "$overlay" = /* ]] || overlay="$repo/$overlay"
[[ -f "$overlay/kustomization.yaml" ]] || { echo "deploy.sh: no kustomization.yaml in $overlay" >&2; exit 2; }

if [[ "$IMAGE" == *@sha256:* ]]; then
  name="${IMAGE%@*}" ref_key=digest ref="${IMAGE#*@}"
else
  name="${IMAGE%:*}" ref_key=newTag ref="${IMAGE##*:}"
  [[ "$name" != "$IMAGE" && "$name" != */ && "$ref" != */* ]] || { echo "deploy.sh: IMAGE needs a tag or digest" >&2; exit 2; }
fi
[[ "$ref" != set-by-deploy ]] || { echo "deploy.sh: IMAGE is the placeholder" >&2; exit 2; }

# Inside the repository: kustomize takes relative paths to other kustomizations only.
work="$(mktemp -d "$repo/kubernetes/.deploy.XXXXXX")"
trap 'rm -rf "$work"' EXIT
overlay_rel="$(realpath --relative-to="$work" "$overlay")"
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - $overlay_rel"
  echo "images:"
  echo "  - name: flight-counter"
  echo "    newName: $name"
  if [[ $ref_key == digest ]]; then echo "    digest: $ref"; else echo "    newTag: \"$ref\""; fi
  echo "patches:"
  if [[ -n "${LB_SOURCE_RANGES:-}" ]]; then
    echo "  - target: {kind: Service, name: flight-counter}"
    echo "    patch: |-"
    echo "      - op: replace"
    echo "        path: /spec/loadBalancerSourceRanges"
    echo "        value:"
    IFS=, read -ra ranges <<<"$LB_SOURCE_RANGES"
    for r in "${ranges[@]}"; do echo "          - ${r// /}"; done
  fi
  if [[ -n "${ACM_CERTIFICATE_ARN:-}" ]]; then
    echo "  - target: {kind: Service, name: flight-counter, annotationSelector: service.beta.kubernetes.io/aws-load-balancer-ssl-ports}"
    echo "    patch: |-"
    echo "      - op: replace"
    echo "        path: /metadata/annotations/service.beta.kubernetes.io~1aws-load-balancer-ssl-cert"
    echo "        value: $ACM_CERTIFICATE_ARN"
  fi
} >"$work/kustomization.yaml"
# An empty patches: list is not valid.
if ! grep -q '^  - target' "$work/kustomization.yaml"; then sed -i '/^patches:$/d' "$work/kustomization.yaml"; fi

kubectl kustomize "$work" >"$work/rendered.yaml"
if grep -q 'certificate/set-by-deploy' "$work/rendered.yaml"; then
  echo "deploy.sh: $overlay needs ACM_CERTIFICATE_ARN (TLS on 443)" >&2
  exit 2
fi
if $render_only; then
  cat "$work/rendered.yaml"
  exit 0
fi

namespace=flight-counter
kubectl apply --server-side --field-manager=flight-counter-deploy -f "$work/rendered.yaml"
if ! kubectl --namespace "$namespace" rollout status deployment/flight-counter --timeout="${ROLLOUT_TIMEOUT:-10m}"; then
  kubectl --namespace "$namespace" get pods -o wide || true
  kubectl --namespace "$namespace" describe deployment/flight-counter | tail -n 30 || true
  exit 1
fi
