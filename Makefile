# warren — build, test and measure. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X github.com/warren-mesh/warren/internal/version.Version=$(VERSION) -X github.com/warren-mesh/warren/internal/version.Commit=$(COMMIT)
BIN         ?= bin
GOOS        ?= $(shell $(GO) env GOOS)
GOARCH      ?= $(shell $(GO) env GOARCH)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 5s
BENCHTIME   ?= 1x
TEST_TIMEOUT ?= 20m

.PHONY: help build build-cross test test-short test-integration bench fuzz lint demo check tidy-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build hare, edge and hub into bin/ (GOOS/GOARCH honoured)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/hare ./cmd/edge ./cmd/hub

CROSS_ARCHES ?= amd64 arm64

build-cross: ## cross-build for linux and freebsd (CROSS_ARCHES: amd64 arm64) into bin/<os>-<arch>/
	@for os in linux freebsd; do for arch in $(CROSS_ARCHES); do \
	  $(MAKE) --no-print-directory build GOOS=$$os GOARCH=$$arch BIN=$(BIN)/$$os-$$arch || exit 1; \
	done; done

test: ## everything: unit, integration, fuzz seed corpora, browser and Ansible tests (screenshots in test/artifacts/)
	WARREN_ARTIFACTS="$${WARREN_ARTIFACTS:-$(CURDIR)/test/artifacts}" $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test-short: ## unit tests only (skips real-process integration tests)
	$(GO) test -count=1 -short ./...

test-integration: ## real-process tests in test/integration
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./test/integration/...

bench: ## run the benchmarks and print their figures
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m ./... | grep -E '^(Benchmark|ok|FAIL|---)' 

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint: ## gofmt, go vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

tidy-check: ## go mod tidy leaves no diff
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

demo: build ## the whole mesh on one machine with embedded defaults
	./scripts/demo

check: lint tidy-check test ## all of it

clean: ## remove build output
	rm -rf $(BIN)
