# linli — the targets CI runs are the ones a developer runs.
CARGO ?= cargo
BUF ?= npx --yes @bufbuild/buf@1.75.0

.PHONY: run build test fmt fmt-check lint clippy proto-lint release

## make run: build and start the suite on the embedded default (SQLite under ./data) with demo data.
run: build
	./deploy/run-local.sh

build:
	$(CARGO) build --workspace --bins

## make test: every test, on SQLite and on PostgreSQL (LINLI_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
test:
	$(CARGO) test --workspace --all-targets

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
