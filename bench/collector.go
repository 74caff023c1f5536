package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// The traced pair exports its spans to a stand-in for Zipkin, run in a
// process of its own as a collector is: in the harness's process, its
// decoding of a post (256 spans, some 90 KB of JSON) and the garbage of it
// took the CPU and the collector's pauses from the load generator's
// goroutines, which timed the traced calls alone longer by it.

// serveZipkinCollector is the stand-in: `-zipkin-collector LISTEN`. It
// takes POSTs of Zipkin's v2 JSON on /api/v2/spans, decodes each (a
// malformed one is refused with 400) and counts its spans; GET /count
// answers how many it took.
func serveZipkinCollector(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: -zipkin-collector LISTEN, got %q", args)
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	announce(ln)
	return http.Serve(ln, collectorHandler(new(atomic.Int64)))
}

// collectorHandler is the stand-in's routes, counting into spans.
func collectorHandler(spans *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", func(w http.ResponseWriter, r *http.Request) {
		var batch []json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spans.Add(int64(len(batch)))
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(spans.Load(), 10))
	})
	return mux
}

// startCollector starts the stand-in and writes the traced pair's
// Configuration for it: the one the calculator's runner writes
// (resources.ZipkinYAML, every trace sampled).
func (e *env) startCollector() (stop func(), err error) {
	p, addr, err := e.floorProcess("zipkin-collector", nil, "-zipkin-collector", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.collector = "http://" + addr
	e.tracing = filepath.Join(e.dir, "appconfig.yaml")
	if err := os.WriteFile(e.tracing, resources.ZipkinYAML("appconfig", e.collector+"/api/v2/spans"), 0o644); err != nil {
		p.stop()
		return nil, err
	}
	return p.stop, nil
}

// collectedSpans is how many spans the collector has taken so far.
func (e *env) collectedSpans() (int64, error) {
	resp, err := http.Get(e.collector + "/count")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
