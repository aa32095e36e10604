# The two commands a newcomer needs: `make run` and `make test`. Everything else is for us.
CARGO ?= cargo

.PHONY: run test lint fmt bench

## Start billmirror on SQLite (./billmirror.db), migrating it first. Prints the first admin token.
run:
	$(CARGO) run --locked -- serve

## Every test: unit tests, then the integration tests on SQLite and PostgreSQL
## (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
test:
	$(CARGO) test --locked

## Webhook ingest and apply throughput (then one and two instances on one PostgreSQL database),
## billing-context latency and backfill throughput, on SQLite and PostgreSQL (release build; see
## BENCHMARKS.md).
bench:
	$(CARGO) bench --locked --bench ingest
	$(CARGO) bench --locked --bench billing
	$(CARGO) bench --locked --bench history

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt
