# The two commands a newcomer needs: `make run` and `make test`. Everything else is for us.
CARGO ?= cargo

.PHONY: run test lint fmt bench browser screenshots

## Start billmirror on SQLite (./billmirror.db), migrating it first. Prints the first admin token.
run:
	$(CARGO) run --locked -- serve

## Every test: unit tests, then the integration tests on SQLite and PostgreSQL
## (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres), browser tests included.
test: browser
	$(CARGO) test --locked

## The browser tests drive Debian's Chromium through chromedriver: install both when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "Installing chromium and chromium-driver for the browser tests"; \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } || { \
			echo "Cannot install chromium and chromium-driver. As root, run:" >&2; \
			echo "    apt-get update && apt-get install -y chromium chromium-driver" >&2; \
			echo "then make test again (the browser tests are never skipped)." >&2; \
			exit 1; }; \
	fi

## A PNG of every page at 1440 px and 360 px wide in target/screenshots/ (not part of `make test`):
## the real app on SQLite with data seeded through the fake Stripe, in Chromium.
screenshots: browser
	SCREENSHOTS_DIR=$(CURDIR)/target/screenshots $(CARGO) test --locked --test api -- \
		--ignored --exact browser::screenshots::every_page_at_desktop_and_narrow_widths --nocapture

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
