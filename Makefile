# sessionha: `make local` runs a local site, `make test` passes the tests.
SHELL := /bin/bash
GO    ?= go
NPM   ?= npm
# Installed when local/package-lock.json changes (npm ci), not on every run.
DEPS  := local/node_modules/.sessionha-installed
TEST_TIMEOUT ?= 12m
# The longest package first: go test runs packages two at a time here (one per core), in
# the order they are named, and e2e mostly waits (on its stack's faults and deadlines), so
# the others run beside it rather than after it.
TEST_FIRST ?= ./test/e2e

.PHONY: all build local test vet fmt-check fuzz soak bench deps clean

all: build

## deps: the pinned emulators (npm ci in local/: fauxqs and the Node 22 it runs on) and
## Chromium for the browser test (a Debian package, installed when missing and root).
## The local DynamoDB is Go (local/dynamo), built like everything else.
deps: $(DEPS) chromium

CHROMIUM ?= /usr/bin/chromium
.PHONY: chromium
chromium:
	@[ -x $(CHROMIUM) ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found at $(CHROMIUM): the browser test needs it (Debian: apt-get install chromium)" >&2; exit 1; fi; }

$(DEPS): local/package.json local/package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "npm not found: install Node.js (any version with npm; Node 22 for fauxqs comes from npm)" >&2; exit 1; }
	cd local && $(NPM) ci --no-audit --no-fund --loglevel=error
	sha256sum local/package-lock.json | cut -d' ' -f1 > $@

## build: every package, the operator tools, and the functions as Lambda arm64 bootstraps
build: lambdas
	$(GO) build ./...
	$(GO) build -buildvcs=auto -o bin/sessionctl ./client/cmd/sessionctl

## lambdas: each functions/<id> as bin/lambda/<id>/bootstrap for provided.al2023 arm64
## (the directory is the function's CDK asset)
.PHONY: lambdas
lambdas:
	@for f in functions/*/; do f=$$(basename $$f); \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -buildvcs=auto -tags lambda.norpc -trimpath -ldflags='-s -w' \
	    -o bin/lambda/$$f/bootstrap ./functions/$$f || exit 1; \
	  echo "bin/lambda/$$f/bootstrap $$(stat -c %s bin/lambda/$$f/bootstrap) bytes"; done

## local: run the local site in the foreground until Ctrl-C (writes local/.run/site.env)
local: $(DEPS)
	$(GO) build -o bin/localsite ./local/cmd/localsite
	exec bin/localsite $(LOCAL_FLAGS)

## test: format, vet, and every test (emulators included; fuzz seed corpora run as tests)
## (files tests save, such as the browser test's screenshot, go to test-output/)
test: deps fmt-check vet
	mkdir -p test-output
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -artifacts -outputdir $(CURDIR)/test-output $(TEST_FIRST) ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './local/node_modules/*' -not -path './infra/node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## fuzz: run the fuzz targets for a while (FUZZTIME=1m each): the messages, sealed values
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeSessionOp -fuzztime $(FUZZTIME) ./events
	$(GO) test -run '^$$' -fuzz FuzzOpen -fuzztime $(FUZZTIME) ./client

## soak: replay 10,000 random session histories against the local DynamoDB, and 5,000
## across two regions replicated like a global table, with splits (prints the seeds)
SOAK_HISTORIES ?= 10000
SOAK_XREGION_HISTORIES ?= 5000
soak: $(DEPS)
	$(GO) test -count=1 -timeout 30m -run '^TestReplay$$' -v ./test/replay -histories $(SOAK_HISTORIES) $(if $(SEED),-seed $(SEED))
	$(GO) test -count=1 -timeout 30m -run '^TestCrossRegion$$' -v ./test/replay -xregion.histories $(SOAK_XREGION_HISTORIES) $(if $(SEED),-seed $(SEED))

## bench: measure DESIGN.md's "Numbers to hold" against the raw emulators, and the peer,
## scs with Redis (a few minutes; never part of make test), and write BENCHMARKS.md and the
## README's Numbers table.
## BENCH_FLAGS='-sessionha.cpuprofile /tmp/pipeline.prof -sessionha.fnprofile /tmp/fn' profiles.
bench: $(DEPS) redis-server
	$(GO) test -count=1 -timeout 15m -run '^TestBench$$' -v ./test/bench -sessionha.bench $(BENCH_FLAGS)

## redis-server: the peer's store for the bench (a Debian package, installed when missing
## and root, with its service kept from starting); the bench starts and stops its own on
## 127.0.0.1.
.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's redis-server for the bench's peer (apt-get)"; \
	    p=/usr/sbin/policy-rc.d; made=; \
	    [ -e $$p ] || { printf '#!/bin/sh\nexit 101\n' > $$p && chmod 755 $$p && made=1; }; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; rc=$$?; \
	    [ -z "$$made" ] || rm -f $$p; exit $$rc; \
	  else echo "redis-server not found: the bench's peer needs it (Debian: apt-get install redis-server)" >&2; exit 1; fi; }

clean:
	rm -rf bin local/.run cdk.out test-output

# --- AWS: the CDK app in infra/ (cdk.json), run by the CLI pinned in infra/package.json ---
# Installed when infra/package-lock.json changes (npm ci), not on every run.
INFRA_DEPS := infra/node_modules/.sessionha-installed
CDK        := infra/node_modules/.bin/cdk
CDK_OUT    ?= cdk.out
# No telemetry, no end-of-life banner from jsii on Node 20.
CDK_ENV    := CDK_DISABLE_CLI_TELEMETRY=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
OUTPUTS    ?= cdk-outputs.json

.PHONY: synth deploy site-env cdk

$(INFRA_DEPS): infra/package.json infra/package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "npm not found: the CDK CLI needs Node.js with npm" >&2; exit 1; }
	cd infra && $(NPM) ci --no-audit --no-fund --loglevel=error
	@# aws-cdk ships Go files (its `cdk init` templates): a go.mod keeps them out of ./...
	printf 'module sessionha.invalid/infra/node_modules\n' > infra/node_modules/go.mod
	sha256sum infra/package-lock.json | cut -d' ' -f1 > $@

## synth: the cloud assembly in cdk.out/ for every site in cdk.json; no AWS account needed
synth: $(INFRA_DEPS) lambdas
	$(CDK_ENV) AWS_EC2_METADATA_DISABLED=true $(CDK) synth --no-notices --quiet -o $(CDK_OUT)

## deploy: cdk deploy STACKS (default --all) with the current AWS credentials, writing
## $(OUTPUTS); then `make site-env SITE=eu` writes that site's env file
deploy: $(INFRA_DEPS) lambdas
	$(CDK_ENV) $(CDK) deploy --no-notices -o $(CDK_OUT) --outputs-file $(OUTPUTS) $(or $(STACKS),--all) $(CDK_ARGS)

## site-env: SITE's env file (site.env) from the outputs of `make deploy`
site-env:
	@[ -n "$(SITE)" ] || { echo "usage: make site-env SITE=<name from cdk.json>" >&2; exit 1; }
	$(GO) run ./infra/cmd/outputs2env -site $(SITE) $(OUTPUTS) > site.env.tmp || { rm -f site.env.tmp; exit 1; }
	mv site.env.tmp site.env
	@echo "wrote site.env for site $(SITE)"

## cdk: any other command of the pinned CLI, e.g. make cdk ARGS='diff sessionha-eu'
cdk: $(INFRA_DEPS) lambdas
	$(CDK_ENV) $(CDK) $(ARGS)
