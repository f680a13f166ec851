#!/usr/bin/env bash
# Builds the four services (and the load generator, for `make chaos-short`) as
# statically linked binaries (once; cargo reuses them) and packs each service
# into a FROM scratch image, linli-<service>:<tag>.
#   deploy/container/build-images.sh [tag]      (default tag: dev)
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-dev}
TARGET=x86_64-unknown-linux-gnu
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/container/containers.conf}

# Static glibc: the binaries need nothing from the image. A target of its own
# keeps these objects apart from the ordinary (dynamic) build in target/release.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$TARGET" \
  --bin linli-people --bin linli-issues --bin linli-logistics --bin linli-gateway --bin linli-loadgen

mkdir -p target/static
for s in people issues logistics gateway; do
  # Debug line tables stay in target/; the image gets the binary without them.
  strip -o "target/static/linli-$s" "target/$TARGET/release/linli-$s"
  if ldd "target/static/linli-$s" 2>&1 | grep -q '=>'; then
    echo "linli-$s is not static" >&2
    exit 1
  fi
  # The docker format keeps the HEALTHCHECK (OCI images have no field for it).
  podman build --quiet --format docker -f deploy/container/Containerfile.static --build-arg SERVICE="$s" \
    -t "localhost/linli-$s:$TAG" target/static >/dev/null
  size=$(podman image inspect --format '{{.Size}}' "localhost/linli-$s:$TAG")
  echo "localhost/linli-$s:$TAG  $((size / 1024 / 1024)) MiB"
done
