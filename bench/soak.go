package main

import (
	"bufio"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	testproc "github.com/tandem-run/tandem/internal/testutil/proc"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// snapshot is what a sidecar reports of itself on its metrics port, and its
// resident memory from /proc.
type snapshot struct {
	goroutines, heapInuse float64
	rss                   int64
}

func (e *env) sampleOf(p *proc, metricsURL string) (snapshot, error) {
	var s snapshot
	resp, err := http.Get(metricsURL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for name, dst := range map[string]*float64{"go_goroutines ": &s.goroutines, "go_memstats_heap_inuse_bytes ": &s.heapInuse} {
			if v, ok := strings.CutPrefix(line, name); ok {
				*dst, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	s.rss = p.memory("VmRSS")
	return s, sc.Err()
}

// soak runs the HTTP path through two sidecars for d at the fixed rate and
// compares each sidecar before and after: goroutines, heap in use and
// resident memory. The baseline is taken after a warm-up that fills every
// connection pool, with the same client connections as the soak, so what
// remains after is what the load left behind.
func soak(o options, d time.Duration) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return err
	}
	mports := [2]int{}
	for i := range mports {
		if mports[i], err = testproc.FreePort(); err != nil {
			return err
		}
	}
	callee, _, err := e.startSidecar("bench-app", e.appAddr, "http", reg, "--enable-metrics=true", "--metrics-port", itoa(mports[0]))
	if err != nil {
		return err
	}
	defer callee.stop()
	caller, a, err := e.startSidecar("bench-client", "", "http", reg, "--enable-metrics=true", "--metrics-port", itoa(mports[1]))
	if err != nil {
		return err
	}
	defer caller.stop()
	procs := []*proc{caller, callee}
	urls := []string{"http://127.0.0.1:" + itoa(mports[1]) + "/metrics", "http://127.0.0.1:" + itoa(mports[0]) + "/metrics"}

	tgt := vegeta.Target{Method: "POST", URL: a.httpURL + "/v1.0/invoke/bench-app/method/echo", Body: e.payload}
	log.Printf("soak: warming up for %s", o.Warmup)
	// One client throughout: the same connections before and after.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: o.Conns, MaxIdleConnsPerHost: o.Conns, MaxConnsPerHost: o.Conns, IdleConnTimeout: time.Hour,
	}}
	attacker := func() *vegeta.Attacker {
		return vegeta.NewAttacker(vegeta.Client(client), vegeta.Workers(uint64(o.Conns)), vegeta.MaxWorkers(uint64(o.Conns)))
	}
	attackWith(attacker(), tgt, load{Rate: o.Rate, Conns: o.Conns, Duration: o.Warmup})
	// Then flat out for a moment, so that every connection pool on the
	// way (ours to the caller, the hop, the callee's to the app) has grown
	// to what the load can make it: growth after that is not the pools.
	attackWith(attacker(), tgt, load{Conns: o.Conns, Duration: 3 * time.Second})
	time.Sleep(2 * time.Second)
	before := make([]snapshot, 2)
	for i, p := range procs {
		if before[i], err = e.sampleOf(p, urls[i]); err != nil {
			return err
		}
	}
	log.Printf("soak: %d req/s for %s", o.Rate, d)
	s := attackWith(attacker(), tgt, load{Rate: o.Rate, Conns: o.Conns, Duration: d})
	time.Sleep(5 * time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "Soak: %d req/s for %s through two sidecars, %d requests, %d errors, p99 %s.\n\n", o.Rate, d, s.Requests, s.Errors, s.quantile(.99))
	b.WriteString("| sidecar | goroutines before | after | heap in use before | after | RSS before | after |\n|---|---:|---:|---:|---:|---:|---:|\n")
	grew := false
	for i, p := range procs {
		after, err := e.sampleOf(p, urls[i])
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n", strings.TrimPrefix(p.Name, "sidecar "),
			before[i].goroutines, after.goroutines, before[i].heapInuse/(1<<20), after.heapInuse/(1<<20), float64(before[i].rss)/(1<<20), float64(after.rss)/(1<<20))
		if after.goroutines > before[i].goroutines+5 || after.heapInuse > 2*before[i].heapInuse+(4<<20) {
			grew = true
		}
	}
	if grew {
		b.WriteString("\nGoroutines or heap did NOT return to the baseline.\n")
	} else {
		b.WriteString("\nGoroutines and heap returned to the baseline.\n")
	}
	fmt.Print(b.String())
	if grew || s.Errors > 0 {
		return fmt.Errorf("soak: %d errors; growth: %v", s.Errors, grew)
	}
	return nil
}
