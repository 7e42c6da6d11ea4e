# passport: run `make help` for the targets.
GO        ?= go
BIN       ?= bin/passport
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.6.1
FUZZTIME  ?= 60s
# Fuzz targets as package:target; `make fuzz` runs each for FUZZTIME on the real event logs,
# `make test` for FUZZTIME_SHORT (new inputs each) from small seeds (scripts/fuzz.sh).
FUZZTIME_SHORT ?= 5000x
FUZZ_TARGETS = ./eventlog:FuzzParse ./evidence:FuzzVerify ./evidence:FuzzVerifyParts ./evidence:FuzzVerifyLog ./api:FuzzAttestRequestJSON

.PHONY: help build demo test bench lint fuzz tidy pins docs loadtest perf-doc docker-smoke

help: ## list the targets with a line of help each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build the passport binary into bin/passport
	$(GO) build -o $(BIN) ./cmd/passport

demo: build ## run the whole flow in one process: issuer, simulated TPM attester, relying party
	./$(BIN) demo

test: pins ## run every test (needs Redis on 127.0.0.1:6379 or PASSPORT_REDIS_URL)
	$(GO) test -count=1 -timeout 20m $(PKGS)
	cd deploy/kubernetes && $(GO) test -count=1 ./...
	@GO=$(GO) FUZZTIME=$(FUZZTIME_SHORT) FUZZMINIMIZE=100x FUZZSHORT=1 ./scripts/fuzz.sh $(FUZZ_TARGETS)

bench: ## run the benchmarks (ratios against peer libraries are printed per benchmark)
	$(GO) test -p 1 -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	cd deploy/kubernetes && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

tidy: ## go mod tidy, refusing silent downgrades of the pinned libraries
	$(GO) mod tidy
	@./.ci/check-pins

pins: ## check that go.mod keeps the pinned library versions and the go-eventlog replace
	@./.ci/check-pins

docs: ## regenerate docs/EVENTLOGS.md and docs/REPLAY.md from the real event-log tests
	PASSPORT_UPDATE_DOCS=1 $(GO) test -count=1 -run 'TestRealEventLogsEndToEnd|TestReplayRealLogs' ./issuer ./attester

.PHONY: rpbench
rpbench: ## relying-party validation side by side: go-jose floor, go-oidc, golang-jwt, cached, middleware, DPoP
	$(GO) test -run '^$$' -bench 'SideBySide' -benchtime 2000x -count 5 ./relyingparty

fuzz: ## run each fuzz target (event-log parsing, evidence decoding, API JSON) for FUZZTIME (60s)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh $(FUZZ_TARGETS)

docker-smoke: ## build the container image and check it serves, attests and verifies (needs Docker, Redis)
	./scripts/docker-smoke.sh

loadtest: build ## load and fault harness on loopback: steady load, Redis and issuer restarts, nonce flood
	./$(BIN) loadtest

perf-doc: ## regenerate docs/PERFORMANCE.md from the benchmarks and the load harness (~3 min)
	GO=$(GO) ./scripts/perf-doc.sh
.PHONY: statusbench
statusbench: ## revocation benchmarks only: relying-party status check, Redis round trips per attestation
	$(GO) test -p 1 -run '^$$' -bench 'StatusCheck|VerifyCachedWithStatus|AttestRedis|AllocateStatus|ReadStatusList' -benchmem ./relyingparty ./issuer ./store/redis
