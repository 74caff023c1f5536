// Command bench measures what a hop through two sidecars costs, the way
// Dapr publishes it: a fixed rate (1,000 requests/s), 16 connections, 1 KB
// payloads, latency percentiles of the call through two sidecars minus the
// same call made directly, plus the sidecars' CPU and peak memory. In the
// same run it measures a floor, two bare httputil.ReverseProxy processes, so
// that the numbers mean something on any machine: what matters is our added
// latency against the floor's.
//
//	go run ./bench            # 10 s warm-up, 60 s per path
//	go run ./bench -short     # a few seconds per path
//	go run ./bench -transactions bench/TRANSACTIONS.md   # how long transactions hold Redis
//
// It writes a Markdown report (-out, bench/RESULTS.md) and a PNG of the
// latency distributions (-png, bench/latency.png), and prints the ratio
// "our added p90 / floor added p90" last.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

type options struct {
	load
	Warmup   time.Duration
	MaxFor   time.Duration // how long each maximum-throughput run lasts
	Size     int
	Out, PNG string
	Redis    string
	Only     string
}

func main() {
	// Floor proxy mode: this binary, re-run as one bare ReverseProxy.
	if len(os.Args) == 4 && os.Args[1] == "-floor-proxy" {
		serveFloorProxy(os.Args[2], os.Args[3])
		return
	}
	var o options
	soakFor := flag.Duration("soak", 0, "instead of the paths: run two sidecars under load this long and compare their goroutines and memory before and after")
	txOut := flag.String("transactions", "", "instead of the paths: time the largest state transactions against Redis and write the report to this file (e.g. bench/TRANSACTIONS.md)")
	short := flag.Bool("short", false, "a quick run: 3 s per path after a 1 s warm-up, 1 s at maximum throughput")
	flag.IntVar(&o.Rate, "rate", 1000, "requests per second of each measured run")
	flag.IntVar(&o.Conns, "conns", 16, "connections (and concurrent requests)")
	flag.DurationVar(&o.Duration, "duration", 60*time.Second, "measured time per path")
	flag.DurationVar(&o.Warmup, "warmup", 10*time.Second, "warm-up per path, not measured")
	flag.DurationVar(&o.MaxFor, "max-duration", 10*time.Second, "time of each maximum-throughput run")
	flag.IntVar(&o.Size, "size", 1024, "payload bytes each way")
	flag.StringVar(&o.Out, "out", "bench/RESULTS.md", "Markdown report; empty: none")
	flag.StringVar(&o.PNG, "png", "bench/latency.png", "PNG chart of the latency distributions; empty: none")
	flag.StringVar(&o.Redis, "redis-server", "redis-server", "redis-server binary, for the state paths")
	flag.StringVar(&o.Only, "paths", "", "comma-separated path names to run (default all)")
	flag.Parse()
	if *short {
		o.Duration, o.Warmup, o.MaxFor = 3*time.Second, time.Second, time.Second
	}
	if o.Rate < 0 || o.Conns < 1 || o.Size < 1 || o.Duration <= 0 {
		log.Fatal("bench: -rate must be at least 0, -conns, -size and -duration positive")
	}
	if *txOut != "" {
		if err := transactions(o, *txOut); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	if *soakFor > 0 {
		if err := soak(o, *soakFor); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	if err := run(o); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// serveFloorProxy is one hop of the floor: httputil.ReverseProxy with its
// defaults, nothing else.
func serveFloorProxy(listen, target string) {
	u, err := url.Parse(target)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(listen, httputil.NewSingleHostReverseProxy(u)))
}

// echoApp is the app every path ends at: it reads the request and answers
// with a payload of the same size.
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
