# hostcert — see README.md. Every target works on a fresh machine: Go modules
# come through the module proxy, Debian packages through scripts/deps.sh.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/hostcert/hostcert/common/version.Version=$(VERSION) -X github.com/hostcert/hostcert/common/version.Commit=$(COMMIT)
PROGRAMS  := primary agent tunnel
BINARIES  := $(addprefix bin/hostcert-,$(PROGRAMS))

.PHONY: all build test test-short bench demo lint clean $(BINARIES)
all: build

build: $(BINARIES)

$(BINARIES): bin/hostcert-%:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./$*

# The README's test command; .ci/run calls exactly this.
test:
	bash scripts/deps.sh
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	$(GO) test -race -count=1 -timeout 12m ./...

test-short:
	$(GO) test -short -count=1 ./...

bench: build
	bash scripts/bench.sh

demo: build
	bash scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

clean:
	rm -rf bin dist
