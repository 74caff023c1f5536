# Tandem: the commands the README and CI use.
GO ?= go

.PHONY: test quick test-node vet lint calculator dashboard sidecar images deps tools bench bench-pubsub bench-pubsub-bulk bench-state-backends bench-middleware bench-scale bench-tracing fuzz soak

## test: everything CI runs: formatting, vet, the whole suite with -race,
## the real Kubernetes node's tests (tests/node, their own run: they need
## root and more than go test's default ten minutes), and a short run of
## every fuzz target.
test: deps lint tools
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/tests/node$$')
	$(GO) test -count=1 -run 'TestInvokeAllocations|TestStateAllocations' ./cmd/sidecar
	$(MAKE) test-node
	$(MAKE) fuzz

## quick: the contributor's loop, in a few minutes, without root or
## anything installed: gofmt, vet, the unit tests and the process-level
## end-to-end tests. -short skips what needs a Kubernetes control plane or
## another tools/build program, Node.js or the npm registry; tests that need
## redis-server or chromium skip when it is not installed. make test runs all.
quick: lint
	$(GO) test -short -count=1 $$($(GO) list ./... | grep -v '/tests/node$$')

## test-node: the product on a real single-node cluster of this machine
## (kubelet, containerd, runc, the CNI bridge, CoreDNS; see tests/node).
test-node:
	$(GO) test -race -count=1 -timeout 40m ./tests/node

## fuzz: run each fuzz target for FUZZTIME (their corpora are under testdata/fuzz).
FUZZTIME ?= 3s
FUZZ_TARGETS = ./internal/invoke:FuzzParseMethod ./pkg/resolver:FuzzParseTarget \
	./internal/config:FuzzParse ./internal/components:FuzzParse \
	./internal/injector:FuzzReview ./internal/api/http:FuzzStateBodies \
	./internal/resiliency:FuzzParse ./internal/api/grpc:FuzzInvokeRequest \
	./pkg/pubsub:FuzzEnvelope
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || \
			{ $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; exit 1; }; \
	done

## tools: build (once; cached under ~/.cache/tandem/tools) the programs the
## end-to-end tests run: Jaeger as the trace collector, the Kubernetes
## control plane and CoreDNS the injector and kubernetes mode are tested
## against, the kube-scheduler and kubelet of the real node, and Helm for
## the chart.
tools:
	./tools/build jaeger etcd kube-apiserver kube-controller-manager kube-scheduler kubelet coredns helm >/dev/null

## bench: added latency, CPU and memory per hop against a floor measured in
## the same run (writes bench/RESULTS.md and bench/latency.png).
bench:
	$(GO) run ./bench

## bench-pubsub: publish-to-handler latency, throughput and CPU through two
## sidecars on Redis Streams against a floor measured in the same run, and a
## slow subscriber's memory (writes the pub/sub section of bench/RESULTS.md).
bench-pubsub:
	$(GO) run ./bench -pubsub bench/RESULTS.md

## bench-pubsub-bulk: bulk publish and bulk delivery against single events
## through sidecars on Redis Streams (writes its section of bench/RESULTS.md).
bench-pubsub-bulk:
	$(GO) run ./bench -pubsub-bulk bench/RESULTS.md

## soak: two sidecars under load for SOAK (3m); their goroutines and memory
## must return to the baseline.
SOAK ?= 3m
soak:
	$(GO) run ./bench -soak $(SOAK) -warmup 10s

## bench-state-backends: state get and save through a sidecar on PostgreSQL
## and on a Redis Cluster beside pgx and go-redis's ClusterClient called
## directly (writes its section of bench/RESULTS.md).
bench-state-backends:
	$(GO) run ./bench -state-backends bench/RESULTS.md

## bench-middleware: what each middleware costs at p90 through two sidecars
## against the same path without it (writes its section of bench/RESULTS.md).
bench-middleware:
	$(GO) run ./bench -middleware bench/RESULTS.md

## bench-scale: how a call's cost through two sidecars grows with concurrent
## connections, body size and app ids, beside the floor (writes its section
## of bench/RESULTS.md, with bench/scale-latency.png and bench/scale-rss.png).
bench-scale:
	$(GO) run ./bench -scale bench/RESULTS.md

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

## sidecar: build the sidecar binary into ./bin, as its image has it
## (static, -tags grpcnotrace: see internal/release).
sidecar:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -o bin/sidecar ./cmd/sidecar

## images: the sidecar, injector and calculator images, as OCI tarballs in
## bin/images (static binaries on an empty base, user 65532; reproducible).
## VERSION is their tag (default: the chart's appVersion); with IMAGE_REGISTRY
## (e.g. localhost:5000/tandem) they are pushed there too. IMAGES=-all adds
## the test node's pause, redis and collector.
images:
	$(GO) run ./tools/images -out bin/images $(IMAGES)

## calculator: run the distributed calculator reference app on this machine
## (TRACES=1: with a trace collector and a page of its traces; DASHBOARD=1:
## with the mesh's dashboard on http://127.0.0.1:8081).
calculator:
	$(GO) run ./samples/calculator/cmd/local$(if $(TRACES), -traces)$(if $(DASHBOARD), -dashboard)

## dashboard: the mesh's dashboard of the sidecars running on this machine
## (the standalone registry), on http://127.0.0.1:8081 (see docs/dashboard.md).
dashboard:
	$(GO) run ./cmd/dashboard $(DASHBOARD_FLAGS)
