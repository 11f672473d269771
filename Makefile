# berth — run Cloudflare-style container apps on your own machine.
# `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
BIN := bin/berth
CACHE := .cache
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The example `make run` serves with `berth dev`, and where.
RUN_EXAMPLE := examples/sandbox
RUN_IP ?= 127.0.0.1
RUN_PORT ?= 8787
TEST_TIMEOUT ?= 9m

export BERTH_CACHE := $(CACHE)

.PHONY: help build run test test-short lint bench engine clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/berth and bin/berth-egress-init (static: it runs inside containers)
	$(GO) build -o $(BIN) ./cmd/berth
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/berth-egress-init ./cmd/berth-egress-init

engine: ## make sure a Docker engine answers (installs docker.io and starts dockerd if needed)
	@scripts/engine.sh up

run: build engine ## serve the sandbox example app (berth dev) on http://127.0.0.1:8787
	CGO_ENABLED=0 $(GO) build -trimpath -o $(RUN_EXAMPLE)/container/app ./$(RUN_EXAMPLE)/container
	$(BIN) dev $(abspath $(RUN_EXAMPLE)) --ip $(RUN_IP) --port $(RUN_PORT)

test: ## run every test against a real Docker engine; stops a dockerd it started
	@scripts/engine.sh up
	@status=0; \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./... || status=$$?; \
	scripts/engine.sh sweep; \
	scripts/engine.sh down; \
	exit $$status

test-short: ## run the tests that need no Docker engine
	$(GO) test -short -count=1 ./...

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench: build engine ## benchmarks against the real engine, with same-run baselines (see docs/benchmarks.md)
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 10x -timeout 30m ./internal/container/docker/
	BERTH_BENCH=1 $(GO) test -count=1 -run '^TestLoad' -v ./internal/worker/
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 2s ./internal/worker/
	$(GO) test -count=1 -run '^$$' -bench 'KV|SQL' -benchtime 2000x ./internal/storage/
	BERTH_BENCH=1 $(GO) test -count=1 -run '^TestBenchExample$$' -v -timeout 20m ./internal/e2e/

clean: ## remove build outputs
	rm -rf bin examples/hello-container/hello examples/*/container/app
