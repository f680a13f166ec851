#!/usr/bin/env bash
# Renders every overlay with kustomize (kubectl kustomize) and validates what
# comes out against the Kubernetes schemas (kubernetes-validate, strict).
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=${K8S_VERSION:-1.31.0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The dev overlay reads a signing key from a file; validate with a throwaway one.
made_key=
if [ ! -f overlays/dev/auth-key.pem ]; then
  openssl genpkey -algorithm ed25519 -out overlays/dev/auth-key.pem 2>/dev/null
  made_key=1
fi
for overlay in dev production; do
  kubectl kustomize "overlays/$overlay" > "$out/$overlay.yaml"
  kinds=$(grep -c '^kind:' "$out/$overlay.yaml")
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/$overlay.yaml"
  echo "$overlay: $kinds resources render and validate against Kubernetes $K8S_VERSION"
done
[ -z "$made_key" ] || rm -f overlays/dev/auth-key.pem
