// Command bench measures what a hop through two sidecars costs, the way
// Dapr publishes it: a fixed rate (1,000 requests/s), 16 connections, 1 KB
// payloads, latency percentiles of the call through two sidecars minus the
// same call made directly, plus the sidecars' CPU and memory. In the same
// run it measures floors, so that the numbers mean something on any
// machine: two bare httputil.ReverseProxy processes in plaintext and with
// mutual TLS between them, two bare grpc-go proxies, and a bare HTTP front
// to Redis; what matters is our added latency against the floor's.
//
// Every figure is the median of -rounds interleaved rounds (a round runs
// every path once, in the same order, so drift hits every path alike),
// shown with its spread; the ratios against the targets use the medians.
//
//	go run ./bench            # 5 rounds of 5 s warm-up, 20 s measured, 5 s flat out per path
//	go run ./bench -short     # 3 rounds of a few seconds per path, reported in $TMPDIR/tandem-bench
//	go run ./bench -profile http-sidecars-mtls   # and a CPU profile of one sidecar
//	go run ./bench -transactions bench/TRANSACTIONS.md   # how long transactions hold Redis
//	go run ./bench -pubsub bench/RESULTS.md   # pub/sub through two sidecars against its floor
//	go run ./bench -pubsub-bulk bench/RESULTS.md   # bulk publish and bulk delivery against single events
//	go run ./bench -state-backends bench/RESULTS.md   # state through a sidecar on PostgreSQL and a Redis Cluster against their clients
//	go run ./bench -middleware bench/RESULTS.md   # each middleware at p90 against two sidecars without one
//	go run ./bench -scale bench/RESULTS.md   # how cost grows with connections, body size and app ids, beside the floor
//
// It writes a Markdown report (-out, bench/RESULTS.md) and a PNG of the
// latency distributions (-png, bench/latency.png), and prints the ratios
// "our added p90 (p99) / floor added p90 (p99)" last.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type options struct {
	load
	Warmup     time.Duration
	MaxFor     time.Duration // how long each maximum-throughput run lasts
	Rounds     int
	Size       int
	Out, PNG   string
	Redis      string
	Only       string
	Profile    string // path during whose last round one sidecar's CPU is profiled
	ProfileOut string
	Soak       time.Duration
	TxOut      string
	PubSub     string // the pub/sub profile's report: the file whose pub/sub section it writes
	PubSubBulk string // the bulk pub/sub profile's report: the file whose bulk section it writes
	// StateBackends is the state backends profile's report: the file
	// whose section on PostgreSQL and the Redis Cluster it writes.
	StateBackends string
	Middleware    string // the middleware profile's report: the file whose middleware section it writes
	// Scale is the scale profile's report: the file whose section "How
	// cost grows" it writes; with -short, one in the temporary folder.
	Scale      string
	ScaleShort bool // the scale profile runs short, and its section says so
	Backlog    int  // events the bulk pub/sub profile publishes and delivers per way and round
}

// floorModes are the modes this binary is re-run in as a floor's process.
var floorModes = map[string]func([]string) error{
	"-floor-proxy":          serveFloorProxy,
	"-grpc-floor-proxy":     serveGRPCFloorProxy,
	"-state-floor":          serveStateFloor,
	"-state-floor-embedded": serveStateFloorEmbedded,
	"-pubsub-floor-pub":     servePubSubFloorPub,
	"-pubsub-floor-sub":     servePubSubFloorSub,
	"-zipkin-collector":     serveZipkinCollector,
}

func main() {
	// Floor proxy mode: this binary, re-run as one bare ReverseProxy.
	if len(os.Args) > 1 {
		if serve, ok := floorModes[os.Args[1]]; ok {
			if err := serve(os.Args[2:]); err != nil {
				log.Fatalf("%s: %v", os.Args[1], err)
			}
			return
		}
	}
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	switch {
	case o.TxOut != "":
		err = transactions(o, o.TxOut)
	case o.PubSub != "":
		err = pubsubBench(o, o.PubSub)
	case o.PubSubBulk != "":
		err = pubsubBulkBench(o, o.PubSubBulk)
	case o.StateBackends != "":
		err = stateBackends(o, o.StateBackends)
	case o.Middleware != "":
		err = middlewareBench(o, o.Middleware)
	case o.Scale != "":
		err = scaleBench(o, o.Scale)
	case o.Soak > 0:
		err = soak(o, o.Soak)
	default:
		err = run(o)
	}
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// parseOptions reads the command line. -short shortens what is not given.
func parseOptions(args []string, usage io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.DurationVar(&o.Soak, "soak", 0, "instead of the paths: run two sidecars under load this long and compare their goroutines and memory before and after")
	fs.StringVar(&o.TxOut, "transactions", "", "instead of the paths: time the largest state transactions against Redis and write the report to this file (e.g. bench/TRANSACTIONS.md)")
	fs.StringVar(&o.PubSub, "pubsub", "", "instead of the paths: measure pub/sub on Redis Streams through two sidecars and its floor, and a slow subscriber's memory, and write the section \"Pub/sub\" of this file (e.g. bench/RESULTS.md), the rest of it kept")
	fs.StringVar(&o.PubSubBulk, "pubsub-bulk", "", "instead of the paths: weigh bulk publish and bulk delivery against single events through sidecars on Redis Streams, and write the section \"Pub/sub: bulk\" of this file (e.g. bench/RESULTS.md), the rest of it kept")
	fs.StringVar(&o.StateBackends, "state-backends", "", "instead of the paths: measure state get and save through a sidecar on PostgreSQL and on a 3-master Redis Cluster beside pgx and go-redis's ClusterClient called directly, and write the section \"State on PostgreSQL and on a Redis Cluster\" of this file (e.g. bench/RESULTS.md), the rest of it kept")
	fs.StringVar(&o.Middleware, "middleware", "", "instead of the paths: weigh each middleware at p90 against two sidecars without a pipeline, and write the section \"Middleware\" of this file (e.g. bench/RESULTS.md), the rest of it kept")
	fs.StringVar(&o.Scale, "scale", "", "instead of the paths: measure how the cost of a call through two sidecars grows with concurrent connections (1 to 4,000), body size (1 KB to 16 MB each way) and app ids in the standalone registry (1 to 1,000), beside the floor, and write the section \"How cost grows\" of this file (e.g. bench/RESULTS.md), the rest of it kept, with scale-latency.png and scale-rss.png beside it; with -short, the file of that name in the temporary folder")
	fs.IntVar(&o.Backlog, "backlog", 10000, "with -pubsub-bulk: events published (100 at a time) and delivered from a backlog, per way and round")
	short := fs.Bool("short", false, "a quick run: 3 rounds of 2 s per path after a 1 s warm-up, 1 s at maximum throughput, its report and chart in the temporary folder (flags given win)")
	fs.IntVar(&o.Rate, "rate", 1000, "requests per second of each measured run")
	fs.IntVar(&o.Conns, "conns", 16, "connections (and concurrent requests)")
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds; each figure is the median of the rounds")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "measured time per path and round")
	fs.DurationVar(&o.Warmup, "warmup", 5*time.Second, "warm-up per path and round, not measured")
	fs.DurationVar(&o.MaxFor, "max-duration", 5*time.Second, "time of each maximum-throughput run")
	fs.IntVar(&o.Size, "size", 1024, "payload bytes each way")
	fs.StringVar(&o.Out, "out", "bench/RESULTS.md", "Markdown report; empty: none")
	fs.StringVar(&o.PNG, "png", "bench/latency.png", "PNG chart of the latency distributions; empty: none")
	fs.StringVar(&o.Redis, "redis-server", "redis-server", "redis-server binary, for the state paths")
	fs.StringVar(&o.Only, "paths", "", "comma-separated path names to run (default all; their groups' direct baselines always run)")
	fs.StringVar(&o.Profile, "profile", "", "a path with sidecars (e.g. http-sidecars-mtls): profile the CPU of its first sidecar during the last round's measured run")
	fs.StringVar(&o.ProfileOut, "profile-out", "bench/cpu.prof", "where -profile writes the profile")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: every option is a flag (-h lists them)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *short {
		for name, set := range map[string]func(){
			"rounds":       func() { o.Rounds = 3 },
			"duration":     func() { o.Duration = 2 * time.Second },
			"warmup":       func() { o.Warmup = time.Second },
			"max-duration": func() { o.MaxFor = time.Second },
			// A quick run's numbers are not worth committing: its report
			// goes to the temporary folder, not over bench/RESULTS.md.
			"out": func() { o.Out = filepath.Join(os.TempDir(), "tandem-bench", "RESULTS.md") },
			"png": func() { o.PNG = filepath.Join(os.TempDir(), "tandem-bench", "latency.png") },
		} {
			if !given[name] {
				set()
			}
		}
	}
	switch {
	case o.Rate < 0:
		return o, fmt.Errorf("-rate %d: give 0 (as fast as it goes) or more requests per second", o.Rate)
	case o.Conns < 1 || o.Size < 1:
		return o, fmt.Errorf("-conns and -size must be at least 1")
	case o.Duration <= 0 || o.Warmup < 0 || o.MaxFor <= 0:
		return o, fmt.Errorf("-duration and -max-duration must be positive, -warmup 0 or more")
	case o.Rounds < 1:
		return o, fmt.Errorf("-rounds %d: give 1 or more (5 or more for a median worth reading)", o.Rounds)
	}
	if o.Scale != "" {
		switch {
		case o.PubSub != "" || o.PubSubBulk != "" || o.TxOut != "" || o.Soak > 0 || o.Middleware != "" || o.StateBackends != "":
			return o, fmt.Errorf("-scale with -pubsub, -pubsub-bulk, -state-backends, -middleware, -transactions or -soak: give one of them")
		case o.Profile != "" || o.Only != "":
			return o, fmt.Errorf("-scale runs its own paths (%s) and profiles none: leave out -profile and -paths", strings.Join(pathNames(scalePaths()), ", "))
		}
		if *short {
			// A quick run's numbers are not worth committing: its
			// section goes to the temporary folder, and says it is short.
			o.Scale = filepath.Join(os.TempDir(), "tandem-bench", filepath.Base(o.Scale))
			o.ScaleShort = true
		}
		return o, nil
	}
	if o.StateBackends != "" {
		switch {
		case o.PubSub != "" || o.PubSubBulk != "" || o.TxOut != "" || o.Soak > 0 || o.Middleware != "":
			return o, fmt.Errorf("-state-backends with -pubsub, -pubsub-bulk, -middleware, -transactions or -soak: give one of them")
		case o.Profile != "" || o.Only != "":
			return o, fmt.Errorf("-state-backends runs its own paths: leave out -profile and -paths")
		}
		return o, nil
	}
	if o.Middleware != "" {
		switch {
		case o.PubSub != "" || o.PubSubBulk != "" || o.TxOut != "" || o.Soak > 0:
			return o, fmt.Errorf("-middleware with -pubsub, -pubsub-bulk, -transactions or -soak: give one of them")
		case o.Only != "":
			return o, fmt.Errorf("-paths with -middleware: it runs its own paths (%s)", strings.Join(pathNames(middlewarePaths()), ", "))
		case o.Profile != "":
			if p, ok := pathIn(middlewarePaths(), o.Profile); !ok || !p.sidecars {
				return o, fmt.Errorf("-profile %q with -middleware: give one of its paths with sidecars (mw-none, mw-<middleware>)", o.Profile)
			}
		}
		return o, nil
	}
	if o.PubSubBulk != "" {
		switch {
		case o.PubSub != "":
			return o, fmt.Errorf("-pubsub and -pubsub-bulk: give one of them")
		case o.Backlog < bulkBatch:
			return o, fmt.Errorf("-backlog %d: give %d or more events", o.Backlog, bulkBatch)
		case o.Profile != "":
			return o, fmt.Errorf("-profile with -pubsub-bulk: it profiles nothing; use -pubsub")
		}
		return o, nil
	}
	if o.PubSub != "" {
		if o.Profile != "" && o.Profile != "pubsub-sidecars" {
			return o, fmt.Errorf("-profile %q with -pubsub: give pubsub-sidecars (its subscriber sidecar is profiled)", o.Profile)
		}
		return o, nil
	}
	if o.Profile != "" {
		p, ok := pathNamed(o.Profile)
		if !ok || !p.sidecars {
			return o, fmt.Errorf("-profile %q: give a path with sidecars: %s", o.Profile, strings.Join(sidecarPaths(), ", "))
		}
		if !selected(o.Only, o.Profile) {
			return o, fmt.Errorf("-profile %q: that path is not among -paths %q", o.Profile, o.Only)
		}
	}
	return o, nil
}

// echoApp is the app every HTTP path ends at: it reads the request and
// answers with a payload of the same size.
func echoApp(size int) http.Handler {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(payload)
	})
}

func listenLocal() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, ln.Addr().String(), nil
}

// selected says whether the path name is among only (all when empty).
func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for p := range strings.SplitSeq(only, ",") {
		if strings.TrimSpace(p) == name {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }
