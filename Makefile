# sessionha: `make local` runs a local site, `make test` passes the tests.
SHELL := /bin/bash
GO    ?= go
NPM   ?= npm
# Installed when local/package-lock.json changes (npm ci), not on every run.
DEPS  := local/node_modules/.sessionha-installed
TEST_TIMEOUT ?= 12m

.PHONY: all build local test vet fmt-check fuzz soak deps clean

all: build

## deps: the pinned emulators (npm ci in local/) and Java 17 for DynamoDB Local
deps: $(DEPS)

$(DEPS): local/package.json local/package-lock.json
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Java 17 for DynamoDB Local (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "java not found: DynamoDB Local needs Java 17 (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; fi; }
	@command -v $(NPM) >/dev/null 2>&1 || { echo "npm not found: install Node.js (any version with npm; Node 22 for fauxqs comes from npm)" >&2; exit 1; }
	cd local && $(NPM) ci --no-audit --no-fund --loglevel=error
	sha256sum local/package-lock.json | cut -d' ' -f1 > $@

## build: every package, the operator tools, and the functions as Lambda arm64 bootstraps
build:
	$(GO) build ./...
	@for f in functions/*/; do f=$$(basename $$f); \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' \
	    -o bin/lambda/$$f/bootstrap ./functions/$$f || exit 1; \
	  echo "bin/lambda/$$f/bootstrap $$(stat -c %s bin/lambda/$$f/bootstrap) bytes"; done

## local: run the local site in the foreground until Ctrl-C (writes local/.run/site.env)
local: $(DEPS)
	$(GO) build -o bin/localsite ./local/cmd/localsite
	exec bin/localsite $(LOCAL_FLAGS)

## test: format, vet, and every test (emulators included; fuzz seed corpora run as tests)
test: $(DEPS) fmt-check vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './local/node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## fuzz: run the fuzz targets for a while (FUZZTIME=1m)
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeSessionOp -fuzztime $(FUZZTIME) ./events

## soak: replay 10,000 random session histories against DynamoDB Local (prints the seed)
SOAK_HISTORIES ?= 10000
soak: $(DEPS)
	$(GO) test -count=1 -timeout 30m -run '^TestReplay$$' -v ./test/replay -histories $(SOAK_HISTORIES) $(if $(SEED),-seed $(SEED))

clean:
	rm -rf bin local/.run
