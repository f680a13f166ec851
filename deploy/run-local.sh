#!/usr/bin/env bash
# Starts the linli suite on this machine: SQLite under ./data, demo data loaded,
# each service its own process. Ctrl-C stops them all cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LINLI_BIN:-target/debug}
mkdir -p data

PEOPLE_DB=${PEOPLE_DATABASE_URL:-sqlite://data/people.db}

echo "loading demo data (safe to repeat)..."
"$BIN/linli-people" --database-url "$PEOPLE_DB" seed

pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping linli..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped."
}
trap stop INT TERM

"$BIN/linli-people" --database-url "$PEOPLE_DB" --listen "${LINLI_PEOPLE_LISTEN:-127.0.0.1:50053}" serve &
pids+=($!)

cat <<EOT

linli is running:
  people   grpc://${LINLI_PEOPLE_LISTEN:-127.0.0.1:50053}  (linli.people.v1.PeopleService, grpc.health.v1, reflection)

Try:  npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge \\
        http://127.0.0.1:50053/linli.people.v1.PeopleService/ListUnits
Press Ctrl-C to stop.
EOT
wait "${pids[@]}"
