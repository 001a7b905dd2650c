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
# `ffc version` reports these (cmd/ffc/version.go).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION)
ARGS ?=
# CUDA backend (kernels/cuda, build tag cuda): the kernels are compiled to
# PTX for each architecture and committed, so a GPU machine without nvcc
# builds from kernels/cuda/ptx. No -lineinfo: it writes the absolute path of
# kernels.cu into the PTX (the committed files would differ per checkout).
NVCC ?= nvcc
NVCCFLAGS ?= -ptx -O3 -std=c++17
CUDA_SRC := kernels/cuda/kernels.cu
PTX_ARCHS := 80 90
CUDA_BIN := bin/ffc-cuda

.PHONY: help build demo test test-stress check bench services-up services-down services-status test-real chaos clean ptx emu-hash cuda cuda-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/ffc (version and commit from git, through -ldflags)
	@tags=$$($(TAGS_CMD)); $(GO) build $${tags:+-tags $$tags} -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ffc

demo: build ## run the main job on the embedded default (pass flags with ARGS="...")
	$(BIN) demo $(ARGS)

check: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@tags=$$($(TAGS_CMD)); $(GO) vet $${tags:+-tags $$tags} ./...

test: check ## run all tests with the race detector (real services too when FFC_* addresses are set)
	@tags=$$($(TAGS_CMD)); $(GO) test $${tags:+-tags $$tags} -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-stress: ## run make test while 3 busy loops per core load the machine (load ≈ 9 on 2 cores); it must pass
	deploy/local/stress.sh --per-core $${FFC_STRESS_PER_CORE:-3} -- $(MAKE) --no-print-directory test

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

chaos: ## chaos suite (benchmarks/chaos, ≥ 10 min) on real Kafka, NATS and MinIO of its own; prints the table (ARGS="--stack embedded --seed 1 ...")
	@tags=$$($(TAGS_CMD)); $(GO) run $${tags:+-tags $$tags} ./benchmarks/chaos --stack real --tags "$$tags" $(ARGS)

ptx: ## regenerate the CUDA kernels' PTX (kernels/cuda/ptx, committed) with nvcc
	@command -v $(NVCC) >/dev/null 2>&1 || { echo "ptx: $(NVCC) not found: deploy/local/cuda.sh install (or set NVCC)"; exit 1; }
	@mkdir -p kernels/cuda/ptx
	@for a in $(PTX_ARCHS); do \
	  echo "$(NVCC) $(NVCCFLAGS) -arch=compute_$$a -o kernels/cuda/ptx/ffc_sm$$a.ptx $(CUDA_SRC)"; \
	  $(NVCC) $(NVCCFLAGS) -arch=compute_$$a -o kernels/cuda/ptx/ffc_sm$$a.ptx $(CUDA_SRC) || exit 1; \
	done
	@$(MAKE) --no-print-directory emu-hash

emu-hash: ## record kernels.cu's hash for the CPU emulator (so Go rebuilds it when kernels.cu changes)
	@h=$$(sha256sum $(CUDA_SRC) | cut -d' ' -f1); f=kernels/cuda/internal/emu/source_hash.go; \
	  sed -i "s/^const kernelsSHA256 = .*/const kernelsSHA256 = \"$$h\"/" $$f; \
	  grep -q "$$h" $$f || { echo "emu-hash: could not update $$f"; exit 1; }; echo "emu-hash: $$f = $$h"

cuda: ## build bin/ffc-cuda with the CUDA backend (-tags cuda; runs only where there is a GPU)
	@if command -v $(NVCC) >/dev/null 2>&1; then $(MAKE) --no-print-directory ptx; \
	  else echo "cuda: no $(NVCC): building with the committed PTX in kernels/cuda/ptx"; fi
	@tags=$$($(TAGS_CMD)); $(GO) build -tags "cuda$${tags:+ $$tags}" -ldflags "$(LDFLAGS)" -o $(CUDA_BIN) ./cmd/ffc
	@echo "cuda: built $(CUDA_BIN) (it exits at start on a machine without a GPU)"

cuda-check: ## CUDA build without a GPU: committed PTX current, vet, build, test binaries compile (nothing runs)
	@NVCC="$(NVCC)" NVCCFLAGS="$(NVCCFLAGS)" PTX_ARCHS="$(PTX_ARCHS)" deploy/local/cuda.sh ptx-check
	@if [ -n "$$(git status --porcelain -- kernels/cuda/ptx)" ]; then \
	  echo "cuda-check: kernels/cuda/ptx is not committed as it is:"; git status --short -- kernels/cuda/ptx; exit 1; fi
	@tags=$$($(TAGS_CMD)); tags="cuda$${tags:+ $$tags}"; set -x; \
	  $(GO) vet -tags "$$tags" ./...; \
	  $(GO) build -tags "$$tags" ./...; \
	  $(GO) build -tags "$$tags" -o /dev/null ./cmd/ffc; \
	  for p in $$($(GO) list -tags "$$tags" ./kernels/cuda/... ./trainers/engine ./benchmarks/gpu); do \
	    $(GO) test -tags "$$tags" -c -o /dev/null $$p; done
	@echo "cuda-check: PTX current; vet, build and test compilation with -tags cuda passed (nothing was run: it needs a GPU)"

clean: ## remove build outputs
	rm -rf bin
