# Tandem: the commands the README and CI use.
GO ?= go

.PHONY: test vet lint calculator sidecar deps tools bench bench-tracing

## test: everything CI runs: formatting, vet, and the whole suite with -race.
test: deps lint tools
	$(GO) test -race -count=1 ./...

## tools: build (once; cached under ~/.cache/tandem/tools) the programs the
## end-to-end tests run: Jaeger as the trace collector, and the Kubernetes
## control plane and CoreDNS the injector and kubernetes mode are tested
## against, and Helm for the chart.
tools:
	./tools/build jaeger etcd kube-apiserver kube-controller-manager coredns helm >/dev/null

## bench: added latency, CPU and memory per hop against a floor measured in
## the same run (writes bench/RESULTS.md and bench/latency.png).
bench:
	$(GO) run ./bench

## bench-tracing: what tracing costs per invocation through two sidecars.
bench-tracing:
	$(GO) test -run '^$$' -bench Invoke -benchmem -count 5 ./cmd/sidecar

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
