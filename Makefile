# passport: run `make help` for the targets.
GO        ?= go
BIN       ?= bin/passport
PKGS      ?= ./...
STATICCHECK_VERSION ?= 2025.1.1

.PHONY: help build demo test bench lint fuzz tidy pins docs

help: ## list the targets with a line of help each
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build the passport binary into bin/passport
	$(GO) build -o $(BIN) ./cmd/passport

demo: build ## run the whole flow in one process: issuer, simulated TPM attester, relying party
	./$(BIN) demo

test: pins ## run every test (needs Redis on 127.0.0.1:6379 or PASSPORT_REDIS_URL)
	$(GO) test -count=1 -timeout 20m $(PKGS)

bench: ## run the benchmarks (ratios against peer libraries are printed per benchmark)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

tidy: ## go mod tidy, refusing silent downgrades of the pinned libraries
	$(GO) mod tidy
	@./.ci/check-pins

pins: ## check that go.mod keeps the pinned library versions and the go-eventlog replace
	@./.ci/check-pins

docs: ## regenerate docs/EVENTLOGS.md and docs/REPLAY.md from the real event-log tests
	PASSPORT_UPDATE_DOCS=1 $(GO) test -count=1 -run 'TestRealEventLogsEndToEnd|TestReplayRealLogs' ./issuer ./attester

.PHONY: statusbench
statusbench: ## revocation benchmarks only: relying-party status check, Redis round trips per attestation
	$(GO) test -run '^$$' -bench 'StatusCheck|VerifyCachedWithStatus|AttestRedis|AllocateStatus|ReadStatusList' -benchmem ./relyingparty ./issuer ./store/redis
