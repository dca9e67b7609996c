# hostcert — see README.md. Every target works on a fresh machine: Go modules
# come through the module proxy, Debian packages through scripts/deps.sh.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/hostcert/hostcert/common/version.Version=$(VERSION) -X github.com/hostcert/hostcert/common/version.Commit=$(COMMIT)
PROGRAMS  := primary agent tunnel
BINARIES  := $(addprefix bin/hostcert-,$(PROGRAMS))

.PHONY: all build test test-short bench demo demo-ha lint fuzz clean $(BINARIES)
# Seconds each fuzz target runs: `make fuzz` (default 60s), and in `make test`
# (20s: CI runs every target at least that long).
FUZZTIME      ?= 60s
FUZZTIME_TEST ?= 20s
all: build

build: $(BINARIES)

$(BINARIES): bin/hostcert-%:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./$*

# The README's test command; .ci/run calls exactly this.
test:
	bash scripts/deps.sh
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	$(GO) test -race -count=1 -timeout 12m ./...
	GO='$(GO)' bash scripts/fuzz.sh $(FUZZTIME_TEST)

test-short:
	$(GO) test -short -count=1 ./...

fuzz:
	GO='$(GO)' bash scripts/fuzz.sh $(FUZZTIME)

bench: build
	bash scripts/bench.sh

demo: build
	$(GO) run ./scripts/demo -bin bin

# Two primary nodes on one throwaway PostgreSQL (the postgresql package:
# scripts/deps.sh installs it as root) and an agent failing over between them.
demo-ha: build
	$(GO) run ./scripts/demo -bin bin -ha

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

clean:
	rm -rf bin dist

# Packaging (docs/packaging.md): .deb/.rpm for linux/amd64 and linux/arm64,
# the Windows zip, and the package test (root: installs into a throwaway root).
.PHONY: packages dist test-packages
packages:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' LDFLAGS='$(LDFLAGS)' GO='$(GO)' bash scripts/packages.sh amd64 arm64

dist:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' LDFLAGS='$(LDFLAGS)' GO='$(GO)' bash scripts/dist.sh

test-packages:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' LDFLAGS='$(LDFLAGS)' GO='$(GO)' bash scripts/test-packages.sh
