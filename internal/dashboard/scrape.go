package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
)

// The metrics map keeps, in memory only, a ring of scrapes of each sidecar:
// one every ringStep at most, for MaxMetricsWindow. A request of the map
// reads every sidecar again when the last round is older than fresh; Run
// reads them every scrapeEvery between requests.
const (
	MaxMetricsWindow = time.Hour
	ringStep         = 10 * time.Second
	scrapeEvery      = 10 * time.Second
	fresh            = time.Second
)

// sidecarKey tells sidecars apart: a restarted sidecar is another one.
type sidecarKey struct {
	appID         string
	pid, httpPort int
	pod           string // a pod's UID and its sidecar's restarts
}

// ring is what is kept of one sidecar's metrics.
type ring struct {
	startedAt   time.Time
	pod         string    // namespace/name, in Kubernetes mode
	metricsPort int       // from its metadata; 0 until read
	samples     []sample  // oldest first, ringStep apart or more
	latest      sample    // the newest scrape (at zero: none yet)
	err         string    // why the last scrape failed
	listed      time.Time // when last seen in the registry
	gone        bool      // not in the registry at the last round
}

// scraper holds the rings; one round runs at a time.
type scraper struct {
	round sync.Mutex // held through a round
	mu    sync.Mutex // guards rings and last
	rings map[sidecarKey]*ring
	last  time.Time // when the last round ended
}

// Run reads every sidecar's metrics every 10 s until ctx ends, so the
// windows of the map have their start even when no page asks.
func (d *Dashboard) Run(ctx context.Context) error {
	if d.pods != nil {
		d.pods.factory.Start(ctx.Done())
		defer d.pods.factory.Shutdown()
		cache.WaitForCacheSync(ctx.Done(), d.pods.synced)
	}
	t := time.NewTicker(scrapeEvery)
	defer t.Stop()
	for {
		d.scrapeAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// scrapeAll reads the metrics of every sidecar in the registry once.
func (d *Dashboard) scrapeAll(ctx context.Context) {
	s := &d.scrapes
	s.round.Lock()
	defer s.round.Unlock()
	entries, err := d.targets()
	if err != nil {
		return // the apps list says why
	}
	now := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxConcurrent)
	for _, e := range entries {
		k := sidecarKey{e.AppID, e.PID, e.HTTPPort, e.key}
		s.mu.Lock()
		r := s.rings[k]
		if r == nil {
			r = &ring{startedAt: e.StartedAt}
			if e.pod != nil {
				r.pod = e.pod.Namespace + "/" + e.pod.Name
			}
			s.rings[k] = r
		}
		r.listed = now
		port := r.metricsPort
		switch {
		case e.pod != nil:
			port = e.metricsPort
		case e.MetricsPort > 0 && e.MetricsPort <= 65535:
			port = e.MetricsPort // registered: no token needed to learn it
		}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			smp, port, err := d.scrape(ctx, e, port)
			s.mu.Lock()
			defer s.mu.Unlock()
			r.metricsPort = port
			if err != nil {
				r.err = err.Error()
				return
			}
			r.err = ""
			r.add(smp)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = time.Now()
	for k, r := range s.rings {
		r.gone = !r.listed.Equal(now)
		if s.last.Sub(r.listed) > MaxMetricsWindow+ringStep { // gone for longer than any window
			delete(s.rings, k)
		}
	}
}

// scrape reads one sidecar's metrics, and first its metrics port from its
// metadata when port is 0.
func (d *Dashboard) scrape(ctx context.Context, e target, port int) (sample, int, error) {
	if e.unread != "" {
		return sample{}, port, errors.New(e.unread)
	}
	if port == 0 && (e.HTTPPort <= 0 || e.HTTPPort > 65535) {
		return sample{}, 0, fmt.Errorf("the sidecar registered no HTTP API port")
	}
	if port == 0 {
		base := "http://" + net.JoinHostPort(e.host, strconv.Itoa(e.HTTPPort))
		resp, body, err := d.get(ctx, base+"/v1.0/metadata", maxMetadataBytes)
		switch {
		case err != nil:
			return sample{}, 0, err
		case resp.StatusCode == http.StatusUnauthorized:
			return sample{}, 0, fmt.Errorf("the sidecar requires an API token to tell its metrics port; the dashboard reads none")
		case resp.StatusCode != http.StatusOK:
			return sample{}, 0, fmt.Errorf("GET /v1.0/metadata answered %s", resp.Status)
		}
		var m metadata
		if err := json.Unmarshal(body, &m); err != nil {
			return sample{}, 0, fmt.Errorf("GET /v1.0/metadata: %w", err)
		}
		if m.ID != e.AppID {
			return sample{}, 0, fmt.Errorf("the sidecar on port %d says it is app %q, not %q", e.HTTPPort, m.ID, e.AppID)
		}
		port = m.Ports["metrics"]
		if port <= 0 || port > 65535 {
			return sample{}, 0, fmt.Errorf("the sidecar serves no metrics (--enable-metrics=false)")
		}
	}
	u := "http://" + net.JoinHostPort(e.host, strconv.Itoa(port)) + "/metrics"
	resp, body, err := d.getWith(ctx, d.client, u, maxMetricsBytes, http.Header{"Accept": {"text/plain; version=0.0.4"}})
	if err != nil {
		return sample{}, port, fmt.Errorf("the metrics port %d: %w", port, err)
	}
	if resp.StatusCode != http.StatusOK {
		return sample{}, port, fmt.Errorf("the metrics port %d: GET /metrics answered %s", port, resp.Status)
	}
	smp, err := parseMetrics(bytes.NewReader(body), time.Now())
	if err != nil {
		return sample{}, port, fmt.Errorf("the metrics port %d: %w", port, err)
	}
	return smp, port, nil
}

// add keeps s as the latest scrape, and in the ring when it is ringStep
// after the last kept; it drops what no window reaches.
func (r *ring) add(s sample) {
	r.latest = s
	if n := len(r.samples); n == 0 || s.at.Sub(r.samples[n-1].at) >= ringStep {
		r.samples = append(r.samples, s)
	}
	// Keep one sample older than the longest window: a window's start.
	cut := 0
	for cut+1 < len(r.samples) && s.at.Sub(r.samples[cut+1].at) >= MaxMetricsWindow {
		cut++
	}
	r.samples = append(r.samples[:0:0], r.samples[cut:]...)
}

// base is the scrape a window starting at from counts from: the newest
// kept at or before from; else, for a sidecar started after from, zero
// at its start (its counters start at zero); else the oldest kept.
func (r *ring) base(from time.Time) (sample, bool) {
	i := sort.Search(len(r.samples), func(i int) bool { return r.samples[i].at.After(from) })
	switch {
	case i > 0:
		return r.samples[i-1], true
	case !r.startedAt.IsZero() && !r.startedAt.Before(from):
		return sample{at: r.startedAt}, true
	case len(r.samples) > 0:
		return r.samples[0], true
	}
	return sample{}, false
}

// MetricsMap is the map of the window from the sidecars' metrics: every
// call between sidecars, publish and delivery counted, with rates over the
// time the scrapes cover and latencies estimated from the histograms'
// buckets. It reads the sidecars first when the last round is older than
// a second.
func (d *Dashboard) MetricsMap(ctx context.Context, window time.Duration) Map {
	s := &d.scrapes
	s.mu.Lock()
	stale := time.Since(s.last) > fresh
	s.mu.Unlock()
	if stale {
		// The round outlives a request that goes away (each read is
		// bounded by Config.Timeout): its reads are kept for the next.
		d.scrapeAll(context.WithoutCancel(ctx))
	}
	return s.mapAt(time.Now().UTC(), window)
}

// mapAt is the metrics map of the window that ends at now.
func (s *scraper) mapAt(now time.Time, window time.Duration) Map {
	m := Map{Source: "metrics", Window: window.String(), At: now, Edges: []Edge{}, Unread: []Unread{}, window: window}
	from := m.At.Add(-window)
	flows := map[flowKey]*flow{}
	s.mu.Lock()
	for k, r := range s.rings {
		if !r.gone && (r.err != "" || r.latest.at.IsZero()) {
			err := r.err
			if err == "" {
				err = "not read yet"
			}
			m.Unread = append(m.Unread, Unread{AppID: k.appID, PID: k.pid, Pod: r.pod, Error: err})
		}
		if r.latest.at.IsZero() || r.latest.at.Before(from) {
			continue
		}
		b, ok := r.base(from)
		if !ok || !r.latest.at.After(b.at) {
			continue
		}
		m.Sidecars++
		addDelta(flows, k.appID, delta(b, r.latest), r.latest.at.Sub(b.at).Seconds())
	}
	s.mu.Unlock()
	m.Edges = edges(flows)
	for i := range m.Edges { // a window the scrapes cover in full
		if m.Edges[i].Seconds >= window.Seconds()-ringStep.Seconds() {
			m.Edges[i].Seconds = 0
		}
	}
	sort.Slice(m.Unread, func(i, j int) bool { return m.Unread[i].AppID < m.Unread[j].AppID })
	return m
}
