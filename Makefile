# FFC stream. `make demo` runs the main job on the embedded default;
# `make test` runs the tests. `make help` lists everything.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := bin/ffc
# Build tags for the CPU backend: empty with OpenBLAS, noopenblas for the
# pure-Go fallback. deploy/local/blas.sh decides (and installs OpenBLAS when
# it can), and says what it chose.
TAGS_CMD := deploy/local/blas.sh --install
TEST_TIMEOUT ?= 45m
ARGS ?=

.PHONY: help build demo test check bench services-up services-down services-status test-real clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/ffc
	@tags=$$($(TAGS_CMD)); $(GO) build $${tags:+-tags $$tags} -o $(BIN) ./cmd/ffc

demo: build ## run the main job on the embedded default (pass flags with ARGS="...")
	$(BIN) demo $(ARGS)

check: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@tags=$$($(TAGS_CMD)); $(GO) vet $${tags:+-tags $$tags} ./...

test: check ## run all tests with the race detector (real services too when FFC_* addresses are set)
	@tags=$$($(TAGS_CMD)); $(GO) test $${tags:+-tags $$tags} -race -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: ## run the Go benchmarks
	@tags=$$($(TAGS_CMD)); $(GO) test $${tags:+-tags $$tags} -run '^$$' -bench . -benchtime 2x ./...

services-up: ## start real Kafka, NATS and MinIO on loopback (installs them on first use)
	deploy/local/services.sh up

services-down: ## stop what services-up started
	deploy/local/services.sh down

services-status: ## show the real services
	deploy/local/services.sh status

test-real: services-up ## run the tests against real Kafka, NATS and MinIO as well as the embedded stack
	eval "$$(deploy/local/services.sh env)"; FFC_REQUIRE_REAL=1 $(MAKE) test

clean: ## remove build outputs
	rm -rf bin
