package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The -scale profile: how the cost of a call through two sidecars grows
// with the connections the app holds open, with the size of the bodies,
// and with the app ids in the standalone registry, beside the floor at
// each point. Its figures are medians of -rounds rounds; in each round
// every point runs once, its processes started afresh.

// scaleConns are the concurrent connections of the first part.
var scaleConns = []int{1, 16, 256, 4000}

// scaleBodies are the body sizes, each way, of the second part.
var scaleBodies = []int{1 << 10, 64 << 10, 1 << 20, 16 << 20}

// scaleIDs are the app ids in the registry of the third part; the first
// is the baseline.
var scaleIDs = []int{1, 10, 100, 1000}

// scaleBodyConns are the connections each body size is driven over, as
// fast as they go.
const scaleBodyConns = 4

// scalePaths are the paths weighed at each point of the first two parts:
// the floor (two bare ReverseProxy processes, plaintext and with TLS
// between them) and two sidecars with mutual TLS off and on.
func scalePaths() []path {
	var ps []path
	for _, name := range []string{"http-floor", "http-floor-tls", "http-sidecars", "http-sidecars-mtls"} {
		p, _ := pathNamed(name)
		ps = append(ps, p)
	}
	return ps
}

// scalePart names the three parts.
type scalePart string

const (
	partConns  scalePart = "connections"
	partBodies scalePart = "bodies"
	partIDs    scalePart = "app ids"
)

// scalePoint is one point of a part: a path at n connections, n bytes
// each way, or n app ids.
type scalePoint struct {
	part scalePart
	path string // "" in the app ids part: one caller sidecar
	n    int
}

// scaleSample is one round of a point.
type scaleSample struct {
	P50, P99 time.Duration
	Requests int
	Errors   int // every failed call, refused ones included
	Refused  int // answers 503 or 429: a bound refused the call
	FirstErr string
	CPU      time.Duration // the path's processes' over the measured run
	IdleRSS  int64         // VmRSS of the path's processes, summed (bodies: the largest), before the run
	// IdlePrivate is the private memory (RssAnon) of the path's processes,
	// summed, after one call and idleSettle; ConnPrivate the same with
	// the point's connections open and idle for idleSettle, ConnPrivateNow
	// right after their calls (settle). Private, not VmRSS: a sidecar
	// unmaps its binary's pages a second after it starts, and the first
	// calls after that map some again, shared code that is no
	// connection's.
	IdlePrivate, ConnPrivate, ConnPrivateNow int64
	RSS                                      int64 // VmRSS of the path's processes, summed, after the measured run
	PeakRSS                                  int64 // the largest VmHWM of its processes after the run
	// PeakOver is, in the bodies part, the most any of its processes'
	// VmHWM rose over its VmRSS before the run; PeakKept: the kernel
	// would not reset VmHWM, so the peaks include the processes' start.
	PeakOver               int64
	PeakKept               bool
	Bytes                  int64 // body bytes moved each way (bodies part)
	Elapsed                time.Duration
	Hits, Renewals, Misses uint64 // the caller's resolver cache lookups over the run
}

// scaleResult is a point over the rounds.
type scaleResult struct {
	scalePoint
	Rounds []*scaleSample
}

// scalePoints are every point, in the order a round runs them; ids 0
// leaves out the app ids part's points above it.
func scalePoints() []scalePoint {
	var pts []scalePoint
	for _, p := range scalePaths() {
		for _, n := range scaleConns {
			pts = append(pts, scalePoint{part: partConns, path: p.name, n: n})
		}
	}
	for _, p := range scalePaths() {
		for _, n := range scaleBodies {
			pts = append(pts, scalePoint{part: partBodies, path: p.name, n: n})
		}
	}
	for _, n := range scaleIDs {
		pts = append(pts, scalePoint{part: partIDs, n: n})
	}
	return pts
}

// fileLimit is what the harness did with RLIMIT_NOFILE.
type fileLimit struct {
	before, after uint64
	err           error
}

// raiseFileLimit sets the soft RLIMIT_NOFILE to the hard one. Set
// explicitly, it is what the sidecars and floor proxies inherit (Go
// raises its own soft limit at start, but gives children the original).
func raiseFileLimit() fileLimit {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fileLimit{err: err}
	}
	fl := fileLimit{before: rl.Cur}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fl.err = err
		return fl
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fl.err = err
		return fl
	}
	fl.after = rl.Cur
	return fl
}

// connsWithin is whether n connections fit in the file limit: each takes
// a descriptor in the harness and one in the front process, which also
// holds its own; 1,024 are left for the rest.
func (fl fileLimit) connsWithin(n int) bool {
	return fl.after == 0 || uint64(n)+1024 <= fl.after
}

// mirrorApp answers each request with as many bytes as its body had,
// streamed: it reads the body, counting, then writes that many bytes
// from a buffer of 32 KiB. Neither way holds a body whole.
func mirrorApp() http.Handler {
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
}

// patternReader is size bytes of a repeating pattern, never held whole.
type patternReader struct{ left int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.left))
	for i := range n {
		b[i] = byte('a' + i%26)
	}
	p.left -= int64(n)
	return n, nil
}

// scaleCall posts size bytes to url with c and reads the answer, which
// must be as long; refused counts answers 503 and 429.
func scaleCall(ctx context.Context, c *http.Client, url string, size int, refused *atomic.Int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &patternReader{left: int64(size)})
	if err != nil {
		return 0, err
	}
	req.ContentLength = int64(size)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			refused.Add(1)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n != int64(size) {
		err = fmt.Errorf("answer of %d bytes to a body of %d", n, size)
	}
	return n, err
}

// newConnClient is a client of one keep-alive connection at most.
func newConnClient() *http.Client {
	t := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, IdleConnTimeout: 10 * time.Minute}
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

// sumMemory is a field of the processes' /proc status (VmRSS, RssAnon),
// summed.
func sumMemory(procs []*proc, field string) int64 {
	var n int64
	for _, p := range procs {
		n += p.memory(field)
	}
	return n
}

func maxPeak(procs []*proc) int64 {
	var n int64
	for _, p := range procs {
		n = max(n, p.peakRSS())
	}
	return n
}

// callURL is the URL of the mirror app's method through path p's front
// at base (a floor's host:port or a sidecar's http URL).
func callURL(p path, front string) string {
	if p.sidecars {
		return front + "/v1.0/invoke/bench-app/method/mirror"
	}
	return "http://" + front + "/mirror"
}

// scaleRig starts the path named name: its processes and the URL of the
// call through it.
func (e *env) scaleRig(name string) ([]*proc, string, error) {
	p, ok := pathNamed(name)
	if !ok {
		return nil, "", fmt.Errorf("no path %q", name)
	}
	if p.sidecars {
		r, caller, err := e.sidecarPair("http", e.appAddr, pairOptions{mtls: name == "http-sidecars-mtls"})
		if err != nil {
			return nil, "", err
		}
		return r.procs, callURL(p, caller.httpURL), nil
	}
	procs, front, err := e.floor(name == "http-floor-tls")
	if err != nil {
		return nil, "", err
	}
	return procs, callURL(p, front), nil
}

// drivePool drives calls of size bytes to url at rate (0: as fast as
// they go) for d, each on the next client of clients: every connection
// carries its share. It returns the latencies, sorted, with the counts.
func drivePool(clients []*http.Client, url string, size, rate int, d time.Duration) (*stats, int64, int) {
	pool := make(chan *http.Client, len(clients))
	for _, c := range clients {
		pool <- c
	}
	var refused atomic.Int64
	var moved atomic.Int64
	s := attackFunc(func(ctx context.Context) error {
		c := <-pool
		defer func() { pool <- c }()
		n, err := scaleCall(ctx, c, url, size, &refused)
		moved.Add(n)
		return err
	}, load{Rate: rate, Conns: len(clients), Duration: d})
	return s, moved.Load(), int(refused.Load())
}

// openConns makes one call on each client, 64 at a time, so that each
// holds an open keep-alive connection.
func openConns(clients []*http.Client, url string, size int) error {
	var refused atomic.Int64
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, c := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := scaleCall(ctx, c, url, size, &refused); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("opening %d connections: %w", len(clients), first)
	}
	return nil
}

func closeClients(clients []*http.Client) {
	for _, c := range clients {
		c.CloseIdleConnections()
	}
}

// settle gives freed memory a moment to show in VmRSS readings.
func settle() { time.Sleep(200 * time.Millisecond) }

// idleSettle is how long connections are left idle before memory per idle
// connection is read: what they hold while they wait, not the garbage of
// the calls that opened them (a sidecar returns that once it has been idle
// for a second; a bare proxy keeps it until its collector runs).
const idleSettle = 2500 * time.Millisecond

// connsPoint measures path at n connections: memory per idle connection,
// then the fixed rate over all n.
func (e *env) connsPoint(name string, n int) (*scaleSample, error) {
	procs, url, err := e.scaleRig(name)
	if err != nil {
		return nil, err
	}
	defer stopAll(procs)
	warm := newConnClient()
	defer warm.CloseIdleConnections()
	if err := openConns([]*http.Client{warm}, url, e.o.Size); err != nil {
		return nil, err
	}
	time.Sleep(idleSettle)
	s := &scaleSample{IdleRSS: sumMemory(procs, "VmRSS"), IdlePrivate: sumMemory(procs, "RssAnon")}
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = newConnClient()
	}
	defer closeClients(clients)
	if err := openConns(clients, url, e.o.Size); err != nil {
		return nil, err
	}
	settle()
	s.ConnPrivateNow = sumMemory(procs, "RssAnon")
	time.Sleep(idleSettle - 200*time.Millisecond)
	s.ConnPrivate = sumMemory(procs, "RssAnon")
	if e.o.Warmup > 0 {
		drivePool(clients, url, e.o.Size, e.o.Rate, e.o.Warmup)
	}
	cpu0 := cpuOf(procs)
	st, _, refused := drivePool(clients, url, e.o.Size, e.o.Rate, e.o.Duration)
	s.CPU = cpuOf(procs) - cpu0
	s.fill(st)
	s.Refused = refused
	s.RSS, s.PeakRSS = sumMemory(procs, "VmRSS"), maxPeak(procs)
	return s, nil
}

func (s *scaleSample) fill(st *stats) {
	s.P50, s.P99 = st.quantile(.5), st.quantile(.99)
	s.Requests, s.Errors, s.FirstErr, s.Elapsed = st.Requests, st.Errors, st.FirstErr, st.Elapsed
}

// bodyPoint drives path with bodies of size bytes each way over
// scaleBodyConns connections as fast as they go, for o.MaxFor.
func (e *env) bodyPoint(name string, size int) (*scaleSample, error) {
	procs, url, err := e.scaleRig(name)
	if err != nil {
		return nil, err
	}
	defer stopAll(procs)
	clients := make([]*http.Client, scaleBodyConns)
	for i := range clients {
		clients[i] = newConnClient()
	}
	defer closeClients(clients)
	if err := openConns(clients, url, 1024); err != nil {
		return nil, err
	}
	settle()
	s := &scaleSample{}
	before := make([]int64, len(procs))
	for i, p := range procs {
		before[i] = p.memory("VmRSS")
		s.IdleRSS = max(s.IdleRSS, before[i])
		if !resetPeak(p) {
			s.PeakKept = true
		}
	}
	cpu0 := cpuOf(procs)
	st, moved, refused := drivePool(clients, url, size, 0, e.o.MaxFor)
	s.CPU = cpuOf(procs) - cpu0
	s.fill(st)
	s.Refused, s.Bytes = refused, moved
	s.RSS, s.PeakRSS = sumMemory(procs, "VmRSS"), maxPeak(procs)
	for i, p := range procs {
		s.PeakOver = max(s.PeakOver, p.peakRSS()-before[i])
	}
	return s, nil
}

// resetPeak sets the process's VmHWM back to its VmRSS (clear_refs 5),
// so that the peak read after a run is the run's; false when the kernel
// refuses, and the peak is the process's since it started.
func resetPeak(p *proc) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Cmd.Process.Pid), []byte("5"), 0) == nil
}

// scaleBench runs the -scale profile and writes its section of file.
func scaleBench(o options, file string) error {
	fl := raiseFileLimit()
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	// Every path of the profile ends at the mirror app.
	ln, addr, err := listenLocal()
	if err != nil {
		return err
	}
	app := &http.Server{Handler: mirrorApp()}
	go func() { _ = app.Serve(ln) }()
	defer app.Close()
	e.appAddr = addr
	peer, stopPeer, err := peerStandIn()
	if err != nil {
		return err
	}
	defer stopPeer()
	load0 := loadAverage()
	var results []*scaleResult
	for _, pt := range scalePoints() {
		results = append(results, &scaleResult{scalePoint: pt})
	}
	for i := range o.Rounds {
		for _, r := range results {
			label := strings.TrimSpace(fmt.Sprintf("round %d/%d %s %s", i+1, o.Rounds, r.part, r.path)) + " " + itoa(r.n)
			var s *scaleSample
			switch {
			case r.part == partConns && !fl.connsWithin(r.n):
				log.Printf("%s: skipped, over the file limit %d", label, fl.after)
				continue
			case r.part == partConns:
				s, err = e.connsPoint(r.path, r.n)
			case r.part == partBodies:
				s, err = e.bodyPoint(r.path, r.n)
			default:
				s, err = e.idsPoint(r.n, peer)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			log.Printf("%s: p50 %s p99 %s, %d calls, %d errors (%d refused), CPU %s, RSS %d KiB, peak %d KiB",
				label, s.P50, s.P99, s.Requests, s.Errors, s.Refused, s.CPU, s.RSS>>10, s.PeakRSS>>10)
			r.Rounds = append(r.Rounds, s)
		}
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	latPNG, rssPNG := filepath.Join(dir, "scale-latency.png"), filepath.Join(dir, "scale-rss.png")
	if err := scaleCharts(latPNG, rssPNG, results); err != nil {
		return err
	}
	section := scaleReport(scaleRun{o: o, short: o.ScaleShort, load0: load0, load1: loadAverage(), files: fl,
		latPNG: pathBase(latPNG), rssPNG: pathBase(rssPNG), date: time.Now().UTC()}, results)
	fmt.Print(section)
	return writeSection(file, scaleTitle, section)
}

// roundsOf are the values f gives of r's rounds, sorted.
func roundsOf(r *scaleResult, f func(*scaleSample) (float64, bool)) []float64 {
	var vs []float64
	for _, s := range r.Rounds {
		if v, ok := f(s); ok {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}
