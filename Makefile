# Tandem: the commands the README and CI use.
GO ?= go

.PHONY: test vet lint calculator sidecar deps

## test: everything CI runs: formatting, vet, and the whole suite with -race.
test: deps lint
	$(GO) test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## deps: what the tests need from Debian (redis-server for the state store tests).
deps:
	./.ci/deps

## sidecar: build the sidecar binary into ./bin.
sidecar:
	$(GO) build -o bin/sidecar ./cmd/sidecar

## calculator: run the distributed calculator reference app on this machine.
calculator:
	$(GO) run ./samples/calculator/cmd/local
