#!/usr/bin/env bash
# Starts the linli suite on this machine: SQLite under ./data, demo data loaded,
# each service its own process. Ctrl-C stops them all cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LINLI_BIN:-target/debug}
mkdir -p data
# Each part makes its own key under data/keys on first start. Data from before
# the keys were split was sealed with the one shared key: keep verifying it.
if [ -f data/auth-key.pem ] && [ -z "${LINLI_AUDIT_KEY_FILE:-}" ]; then
  export LINLI_AUDIT_KEY_FILE=data/auth-key.pem
fi

PEOPLE_ADDR=${LINLI_PEOPLE_LISTEN:-127.0.0.1:50053}
ISSUES_ADDR=${LINLI_ISSUES_LISTEN:-127.0.0.1:50052}
PEOPLE_DB=${PEOPLE_DATABASE_URL:-sqlite://data/people.db}
ISSUES_DB=${ISSUES_DATABASE_URL:-sqlite://data/issues.db}
LOGISTICS_ADDR=${LINLI_LOGISTICS_LISTEN:-127.0.0.1:50054}
LOGISTICS_DB=${LOGISTICS_DATABASE_URL:-sqlite://data/logistics.db}
GATEWAY_ADDR=${LINLI_GATEWAY_LISTEN:-127.0.0.1:50051}
GATEWAY_DB=${GATEWAY_DATABASE_URL:-sqlite://data/gateway.db}
HTTP_ADDR=${LINLI_HTTP_LISTEN:-127.0.0.1:8080}

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "stopping linli..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped."
  fi
}
trap stop EXIT
trap "stop; exit 0" INT TERM

# Waits until something accepts connections on host:port, for at most 30 seconds.
wait_for() {
  local host=${1%:*} port=${1##*:}
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing is listening on $1 after 30 seconds" >&2
  return 1
}

echo "loading demo data (safe to repeat)..."
# This machine only: the demo accounts keep the published password.
"$BIN/linli-people" --database-url "$PEOPLE_DB" seed --keep-demo-passwords

"$BIN/linli-people" --database-url "$PEOPLE_DB" --listen "$PEOPLE_ADDR" serve &
pids+=($!)
wait_for "$PEOPLE_ADDR"

"$BIN/linli-issues" --database-url "$ISSUES_DB" --people-addr "http://$PEOPLE_ADDR" seed
"$BIN/linli-issues" --database-url "$ISSUES_DB" --people-addr "http://$PEOPLE_ADDR" --listen "$ISSUES_ADDR" serve &
pids+=($!)
wait_for "$ISSUES_ADDR"

"$BIN/linli-logistics" --database-url "$LOGISTICS_DB" --people-addr "http://$PEOPLE_ADDR" seed
"$BIN/linli-logistics" --database-url "$LOGISTICS_DB" --people-addr "http://$PEOPLE_ADDR" --listen "$LOGISTICS_ADDR" serve &
pids+=($!)
wait_for "$LOGISTICS_ADDR"

"$BIN/linli-gateway" --database-url "$GATEWAY_DB" --listen "$GATEWAY_ADDR" --http-listen "$HTTP_ADDR" \
  --people-addr "http://$PEOPLE_ADDR" --issues-addr "http://$ISSUES_ADDR" --logistics-addr "http://$LOGISTICS_ADDR" serve &
pids+=($!)
wait_for "$GATEWAY_ADDR"
wait_for "$HTTP_ADDR"

# A demo Open311 key for 双泉社区 (administrative code 421224100005), made once.
if [ ! -s data/open311-demo.key ]; then
  "$BIN/linli-gateway" --database-url "$GATEWAY_DB" --people-addr "http://$PEOPLE_ADDR" \
    open311-key --name demo-app --community 421224100005 > data/open311-demo.key 2>/dev/null
fi
OPEN311_KEY=$(cat data/open311-demo.key)

cat <<EOT

linli is running:
  dashboard  http://$HTTP_ADDR/  (log in as wujing, supervisor or chengguilan; password linli-demo-2021)
  gateway    grpc://$GATEWAY_ADDR  (linli.gateway.v1.AuthService, GatewayService, and the three APIs below)
  people     grpc://$PEOPLE_ADDR  (linli.people.v1.PeopleService)
  issues     grpc://$ISSUES_ADDR  (linli.issues.v1.IssuesService)
  logistics  grpc://$LOGISTICS_ADDR  (linli.logistics.v1.LogisticsService)
  each also serves grpc.health.v1.Health and reflection.

Log in at the gateway (demo accounts: admin, supervisor, wujing, ruanxf, chengguilan;
password linli-demo-2021), then call anything there with the access token:
  b() { npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge "\$@"; }
  TOKEN=\$(b --data '{"username":"wujing","password":"linli-demo-2021"}' \\
    http://$GATEWAY_ADDR/linli.gateway.v1.AuthService/Login | sed -n 's/.*"accessToken": "\\([^"]*\\)".*/\\1/p')
  b -H "authorization: Bearer \$TOKEN" --data '{}' http://$GATEWAY_ADDR/linli.gateway.v1.GatewayService/GetCommunityDashboard
Report a problem as a civic app would (Open311 GeoReport v2; demo key in data/open311-demo.key):
  curl -d api_key=$OPEN311_KEY -d service_code=road -d description=路灯不亮 -d address_string=八角亭小区3栋 http://$HTTP_ADDR/open311/v2/requests.json
Press Ctrl-C to stop.
EOT
wait "${pids[@]}"
