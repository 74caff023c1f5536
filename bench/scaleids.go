package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandem-run/tandem/pkg/resolver/standalone"
)

// The app ids part of the -scale profile (scale.go): one caller sidecar
// resolving 10, 100 or 1,000 app ids of its registry folder, all served by
// one stand-in peer, so that what grows is the caller's name resolution.

// peerStandIn serves the internal port's protocol (HTTP/2 without TLS,
// as sidecars with mutual TLS off speak it) for any app id, answering
// each call as the mirror app does: the peer of every app id of the
// registry part, so that what grows there is the caller's name
// resolution alone.
func peerStandIn() (addr string, stop func(), err error) {
	ln, addr, err := listenLocal()
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mirrorApp(), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	return addr, func() { _ = srv.Close() }, nil
}

// scaleAppID is the i-th app id of the registry part.
func scaleAppID(i int) string { return fmt.Sprintf("scale-app-%04d", i) }

// idsPoint registers n app ids at the stand-in peer, starts one caller
// sidecar (mTLS off, metrics on) on that registry, and calls the ids in
// turn at the fixed rate over o.Conns connections.
func (e *env) idsPoint(n int, peer string) (*scaleSample, error) {
	reg, err := os.MkdirTemp(e.dir, "registry-")
	if err != nil {
		return nil, err
	}
	for i := range n {
		r, err := standalone.Register(reg, standalone.Entry{AppID: scaleAppID(i), PID: os.Getpid(), InternalAddress: peer, StartedAt: time.Now()})
		if err != nil {
			return nil, fmt.Errorf("registering app id %d of %d: %w", i+1, n, err)
		}
		defer r.Close()
	}
	p, a, err := e.startSidecar("bench-client", "", "http", reg, "--enable-mtls=false", "--enable-metrics=true", "--metrics-port", "0")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if a.metricsURL == "" {
		return nil, errors.New("the caller sidecar registered no metrics port")
	}
	var next atomic.Uint64
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.o.Conns, DisableCompression: true}, Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	var refused atomic.Int64
	drive := func(d time.Duration) *stats {
		return attackFunc(func(ctx context.Context) error {
			id := scaleAppID(int(next.Add(1)-1) % n)
			_, err := scaleCall(ctx, c, a.httpURL+"/v1.0/invoke/"+id+"/method/mirror", e.o.Size, &refused)
			return err
		}, load{Rate: e.o.Rate, Conns: e.o.Conns, Duration: d})
	}
	if e.o.Warmup > 0 {
		drive(e.o.Warmup)
	}
	l0, err := cacheLookups(a.metricsURL)
	if err != nil {
		return nil, err
	}
	s := &scaleSample{}
	cpu0 := p.cpu()
	st := drive(e.o.Duration)
	s.CPU = p.cpu() - cpu0
	s.fill(st)
	l1, err := cacheLookups(a.metricsURL)
	if err != nil {
		return nil, err
	}
	s.Hits, s.Renewals, s.Misses = l1.hits-l0.hits, l1.renewals-l0.renewals, l1.misses-l0.misses
	s.Refused = int(refused.Load())
	s.RSS, s.PeakRSS = p.memory("VmRSS"), p.peakRSS()
	return s, nil
}

// lookups are the counts of tandem_resolver_cache_lookups_total by result.
type lookups struct{ hits, renewals, misses uint64 }

// cacheLookups reads tandem_resolver_cache_lookups_total from the
// sidecar's metrics at url.
func cacheLookups(url string) (lookups, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return lookups{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return lookups{}, fmt.Errorf("%s/metrics: %s", url, resp.Status)
	}
	return parseCacheLookups(resp.Body)
}

// parseCacheLookups reads the series of tandem_resolver_cache_lookups_total
// from Prometheus's text format; an error when hit or miss is missing
// (renewed is 0 when missing: a sidecar from before renewals).
func parseCacheLookups(r io.Reader) (lookups, error) {
	var l lookups
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "tandem_resolver_cache_lookups_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, perr := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if perr != nil {
			return l, fmt.Errorf("tandem_resolver_cache_lookups_total: %q: %w", line, perr)
		}
		switch {
		case strings.Contains(labels, `result="hit"`):
			l.hits, found = uint64(v), found|1
		case strings.Contains(labels, `result="miss"`):
			l.misses, found = uint64(v), found|2
		case strings.Contains(labels, `result="renewed"`):
			l.renewals = uint64(v)
		}
	}
	if err := sc.Err(); err != nil {
		return l, err
	}
	if found != 3 {
		return l, errors.New("no tandem_resolver_cache_lookups_total hit and miss series in the sidecar's metrics (a build without the resolver's counter?)")
	}
	return l, nil
}
