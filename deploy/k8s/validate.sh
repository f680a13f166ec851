#!/usr/bin/env bash
# Renders every overlay with kustomize (kubectl kustomize) and validates what
# comes out against the Kubernetes schemas (kubernetes-validate, strict).
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=${K8S_VERSION:-1.31.0}
out=$(mktemp -d)
made_keys=
trap 'rm -rf "$out"; [ -z "$made_keys" ] || rm -rf overlays/dev/keys' EXIT
# The dev overlay reads the parts' keys from files; validate with throwaway ones.
if [ ! -d overlays/dev/keys ]; then
  mkdir -p overlays/dev/keys
  for part in issuer people issues logistics gateway; do
    openssl genpkey -algorithm ed25519 -out "overlays/dev/keys/$part.key.pem" 2>/dev/null
    openssl pkey -in "overlays/dev/keys/$part.key.pem" -pubout -out "overlays/dev/keys/$part.pub.pem"
  done
  made_keys=1
fi
for overlay in dev production; do
  kubectl kustomize "overlays/$overlay" > "$out/$overlay.yaml"
  kinds=$(grep -c '^kind:' "$out/$overlay.yaml")
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/$overlay.yaml"
  echo "$overlay: $kinds resources render and validate against Kubernetes $K8S_VERSION"
done
