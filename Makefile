# linli — the targets CI runs are the ones a developer runs.
SHELL := /bin/bash
CARGO ?= cargo
BUF ?= npx --yes @bufbuild/buf@1.75.0

.PHONY: run build test fuzz screenshots bench bench-postgres chaos chaos-short bench-web images container-smoke compose-up compose-down open311-check deploy-check fmt fmt-check lint clippy proto-lint release

## make run: build and start the suite on the embedded default (SQLite under ./data) with demo data.
run: build
	./deploy/run-local.sh

build:
	$(CARGO) build --workspace --bins

## make test: every test, on SQLite and on PostgreSQL (LINLI_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
test:
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "all tests: %d passed, %d failed\n", p, f }' target/test.log

## make fuzz: the whole-API fuzz test, long form (make test runs a short one); LINLI_FUZZ_SEED=n replays a run.
fuzz:
	LINLI_FUZZ_ROUNDS=$${LINLI_FUZZ_ROUNDS:-200} $(CARGO) test -p linli-gateway --test fuzz -- --nocapture

## make screenshots: drive the dashboard in headless Chromium and refresh the pictures in docs/screenshots/.
screenshots:
	$(CARGO) test -p linli-gateway --test browser
	mkdir -p docs/screenshots && cp target/screenshots/*.png docs/screenshots/

## make bench: a county (100 communities x 1,258 residents, 1,000 issues each) driven through the gateway
## on SQLite and on PostgreSQL, against the machine's empty-call limit (release build; docs/BENCHMARKS.md).
## LOADGEN_ARGS adds flags, e.g. LOADGEN_ARGS="--communities 20 --seconds 10".
LOADGEN_ARGS ?=
bench: release
	./target/release/linli-loadgen bench --backend sqlite $(LOADGEN_ARGS)
	./target/release/linli-loadgen bench --backend postgres $(LOADGEN_ARGS)

## make chaos: kill -9 each backend, stop PostgreSQL (a private instance), slow a backend, all under load;
## nothing acknowledged may be lost (release build).
chaos: release
	./target/release/linli-loadgen chaos --backend sqlite
	./target/release/linli-loadgen chaos --backend postgres

## make chaos-short: the same faults, shorter, on the static release binaries `make images` builds (CI).
STATIC_BIN ?= target/x86_64-unknown-linux-gnu/release
chaos-short:
	$(STATIC_BIN)/linli-loadgen chaos --backend postgres --bin-dir $(STATIC_BIN) --down-secs 2 --steady-secs 2

## make bench-web: server time of the dashboard's pages on the demo data (release build).
bench-web:
	$(CARGO) bench -p linli-gateway --bench web

## make open311-check BASE=https://host/open311/v2 KEY=… JURISDICTION=…: GeoReport v2 conformance checks against any endpoint.
open311-check:
	python3 tests/open311/check.py $(BASE) --api-key $(KEY) --jurisdiction $(JURISDICTION)

## make images: static binaries in FROM scratch images, localhost/linli-<service>:dev (podman).
images:
	./deploy/container/build-images.sh

## make container-smoke: the suite from its images on PostgreSQL, checked through the gateway, stopped by SIGTERM.
container-smoke: images
	./deploy/container/smoke.sh

COMPOSE ?= podman-compose
## make compose-up / compose-down: the suite, PostgreSQL, collector, Jaeger and Prometheus (deploy/compose.yaml).
compose-up: images
	@mkdir -p data
	$(CARGO) run -q --bin linli-gateway -- keys --dir data/compose-keys
	@mkdir -p data/compose-keys/public && cp data/compose-keys/*.pub.pem data/compose-keys/public/
	LINLI_INIT=$${LINLI_INIT:-seed} $(COMPOSE) -f deploy/compose.yaml up -d
	@echo "dashboard: http://127.0.0.1:8080/  traces: http://127.0.0.1:16686/  metrics: http://127.0.0.1:9090/"

compose-down:
	$(COMPOSE) -f deploy/compose.yaml down

## make deploy-check: the compose file parses; the Kubernetes overlays render and validate.
deploy-check:
	$(COMPOSE) -f deploy/compose.yaml config >/dev/null
	./deploy/k8s/validate.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

proto-lint:
	$(BUF) lint

## make lint: formatting, clippy and buf lint of the protos.
lint: fmt-check clippy proto-lint

release:
	$(CARGO) build --workspace --bins --release
