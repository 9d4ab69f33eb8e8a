# agentregistry: `make run` starts the service in dev mode; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin/agentregistry
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: run build generate check-generated test test-short bench bench-gateway bench-startup bench-subscriptions bench-portal lint migration

run: ## run the service on embedded SQLite in dev mode (demo data, local token issuer)
	$(GO) run ./cmd/agentregistry serve --dev

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/agentregistry

generate: ## regenerate ent and gqlgen code from ent/schema and graph/schema
	$(GO) run -mod=mod ./ent/entc.go
	$(GO) tool gqlgen generate

check-generated: generate ## fail when generated code is not what the sources produce
	@if [ -n "$$(git status --porcelain -- ent graph gqlgen.yml)" ]; then \
		echo "make generate changed files; commit the regenerated code:"; \
		git status --porcelain -- ent graph gqlgen.yml; exit 1; fi

test: ## all tests: SQLite always; PostgreSQL/Redis when TEST_DATABASE_URL/TEST_REDIS_URL are set
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 ./...

bench: ## Go micro-benchmarks (ratios against baselines are printed by the bench-* targets)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

# Gateway load benchmark: the real binary on a scratch PostgreSQL database (needs
# BENCH_DATABASE_URL or TEST_DATABASE_URL) vs a bare reverse proxy; prints figures, asserts
# nothing. BENCH_FLAGS="-duration 10s -concurrency 64 -rate 1000" are the defaults.
bench-gateway:
	$(GO) run ./loadtest/gateway $(BENCH_FLAGS)

# usageStats subscriptions under invoke load: N subscriptions (mixed filters over 100
# tenants) held on the real binary (scratch PostgreSQL as for bench-gateway) while invokes
# run at a steady rate; prints delivery delay p50/p99, messages/s, RSS per subscriber and
# the invoke p99 beside runs without subscribers. Asserts nothing.
# BENCH_FLAGS="-subscribers 1000 -tenants 100 -rate 200 -duration 20s" are the defaults;
# -repeat N runs it N times and prints the spread of the invoke p99 ratios;
# -service-env KEY=VALUE (repeatable) starts the service with e.g. GOGC=400.
bench-subscriptions:
	$(GO) run ./loadtest/subscriptions $(BENCH_FLAGS)

# Portal usage reads: 1,000,000 usage records over 100 tenants and 45 days bulk-loaded into
# a scratch PostgreSQL database (as for bench-gateway) with their rollups; prints p50/p99
# of the dashboard read and of usage(groupBy: DAY) over 30 days, and the usage EXPLAIN.
# Asserts nothing. BENCH_FLAGS="-records 1000000 -tenants 100 -days 45 -iterations 2000".
bench-portal:
	$(GO) run ./loadtest/portal $(BENCH_FLAGS)

# Start-up time of serve --dev (exec to first 200 of /readyz) and idle RSS, median of 5.
bench-startup:
	$(GO) run ./loadtest/gateway -role startup $(BENCH_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

migration: ## write the next PostgreSQL migration: make migration name=add_something
	$(GO) run ./internal/database/migrationgen -name $(name)
