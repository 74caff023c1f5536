package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/resources"
	psredis "github.com/tandem-run/tandem/pkg/pubsub/redis"
)

// The pub/sub profile (-pubsub FILE) publishes events of o.Size bytes to a
// topic of a real redis-server and measures, at the handler of a
// subscribing app in the harness, the time from before each publish call
// to the handler's receipt. Two ways, interleaved in rounds:
//
//   - sidecars: a publisher's sidecar (no app) and a subscriber's sidecar
//     (with the app), two processes, as two Dapr apps have them;
//   - floor: the pub/sub floor's two processes (pubsubfloor.go): XADD, and
//     XREADGROUP + POST to the same app + XACK, with go-redis.
//
// Then, through the sidecars only, a subscriber ten times slower than its
// publisher, with several queueDepth values: the subscriber sidecar's
// resident memory over time, and where the backlog is (Redis's pending
// entries and the group's lag).

// psGroup is the consumer group both subscribers use: the subscriber
// sidecar's app id, its consumerID's default.
const psGroup = "bench-sub"

// psSample is one round of one way.
type psSample struct {
	Deliver        *stats // publish to handler, at the fixed rate
	Publish        *stats // the publish calls themselves
	Lost           int    // published (2xx) and not received after the drain
	PubCPU, SubCPU time.Duration
	RedisCPU       time.Duration
	MaxPublished   int
	MaxRate        float64          // events a second received flat out, from the first publish to the last receipt
	PeakRSS        int64            // the subscriber's VmHWM after the fixed rate
	Commands       map[string]int64 // Redis's calls of each command over the fixed rate (INFO commandstats)
}

// psWay is one way of publishing and delivering, and its rounds.
type psWay struct {
	name, about string
	setup       func(topic string, profile bool) (*psRig, error)
	rounds      []*psSample
}

// psRig is one way set up: its processes, the subscriber's first, and how
// to publish.
type psRig struct {
	sub, pub *proc
	publish  func(ctx context.Context, topic string, body []byte) error
	profile  string
	client   *http.Client
}

func (r *psRig) stop() {
	r.client.CloseIdleConnections()
	r.pub.stop()
	r.sub.stop()
}

// psEnv is what the pub/sub profile's runs share.
type psEnv struct {
	*env
	sink    *sink
	sinkURL string // the app's address
	redisP  *proc
	admin   *goredis.Client
}

func pubsubBench(o options, out string) error {
	e, cleanup, err := newEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	rp, err := e.startRedis()
	if err != nil {
		return err
	}
	defer rp.stop()
	ln, addr, err := listenLocal()
	if err != nil {
		return err
	}
	p := &psEnv{env: e, sink: newSink(), sinkURL: addr, redisP: rp, admin: goredis.NewClient(&goredis.Options{Addr: e.redis})}
	defer p.admin.Close()
	srv := &http.Server{Handler: p.sink}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ways := []*psWay{
		{name: "pubsub-sidecars", about: "`POST /v1.0/publish/pubsub/{topic}` on the publisher's sidecar (no app), delivered by the subscriber's sidecar (the app's `GET /dapr/subscribe`, `POST` of the CloudEvent to its route); `pubsub.redis` with its defaults (concurrency 10, queueDepth 100). Two sidecars, as two Dapr apps have them, each on its default one CPU",
			setup: func(topic string, profile bool) (*psRig, error) { return p.sidecars(topic, 0, profile) }},
		{name: "pubsub-floor", about: "the pub/sub floor's two processes: `POST /publish/{topic}` answered once `XADD` is, and a subscriber reading with `XREADGROUP` (up to 10 held at once), 10 workers that `POST` each entry's data to the same app and `XACK` it; go-redis configured as the component configures it. No envelope, no redelivery: the least this delivery costs",
			setup: func(topic string, _ bool) (*psRig, error) { return p.floor(topic, nil) }},
		{name: "pubsub-floor-1cpu", about: "the same floor on one CPU each (`GOMAXPROCS=1`), as a sidecar runs by default",
			setup: func(topic string, _ bool) (*psRig, error) { return p.floor(topic, []string{"GOMAXPROCS=1"}) }},
	}
	var prof profile
	for i := range o.Rounds {
		for _, w := range ways {
			topic := fmt.Sprintf("bench-%d-%s", i+1, w.name)
			profiled := o.Profile == w.name && i == o.Rounds-1
			rg, err := w.setup(topic, profiled)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", w.name, i+1, err)
			}
			s, pr, err := p.measure(rg, topic, profiled)
			rg.stop()
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", w.name, i+1, err)
			}
			if profiled {
				prof = pr
				prof.path = w.name
			}
			log.Printf("round %d/%d %s: p50 %s p90 %s p99 %s, %d lost; max %.0f events/s", i+1, o.Rounds, w.name,
				s.Deliver.quantile(.5), s.Deliver.quantile(.9), s.Deliver.quantile(.99), s.Lost, s.MaxRate)
			w.rounds = append(w.rounds, s)
			if err := p.admin.FlushAll(context.Background()).Err(); err != nil {
				return err
			}
		}
	}
	var slow []slowSample
	for _, qd := range slowQueueDepths {
		s, err := p.slow(qd)
		if err != nil {
			return fmt.Errorf("slow subscriber, queueDepth %d: %w", qd, err)
		}
		log.Printf("slow subscriber, queueDepth %d: peak RSS %.1f MiB, %d pending, lag %d", qd, mib(s.PeakRSS), s.Pending, s.Lag)
		slow = append(slow, s)
		if err := p.admin.FlushAll(context.Background()).Err(); err != nil {
			return err
		}
	}
	section := pubsubReport(o, ways, slow, prof)
	fmt.Print(section)
	if out == "" {
		return nil
	}
	return writeSection(out, pubsubTitle, section)
}

// component writes a folder holding the pubsub.redis Component "pubsub"
// for the harness's Redis, with queueDepth when it is not 0, and returns it.
func (p *psEnv) component(queueDepth int) (string, error) {
	dir := filepath.Join(p.dir, fmt.Sprintf("pubsub-queue-%d", queueDepth))
	md := []string{"redisHost", p.redis}
	if queueDepth > 0 {
		md = append(md, "queueDepth", itoa(queueDepth))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "pubsub.yaml"), resources.PubSubYAML("pubsub", "pubsub.redis", md...), 0o644)
}

// sidecars starts the subscriber's sidecar, with the app subscribed to
// topic, then the publisher's, on one registry folder, both with the
// pubsub Component.
func (p *psEnv) sidecars(topic string, queueDepth int, profile bool) (*psRig, error) {
	p.sink.reset(topic, 0)
	res, err := p.component(queueDepth)
	if err != nil {
		return nil, err
	}
	reg, err := os.MkdirTemp(p.dir, "registry-")
	if err != nil {
		return nil, err
	}
	extra, pprof, err := profileFlags(profile)
	if err != nil {
		return nil, err
	}
	sub, _, err := p.startSidecar(psGroup, p.sinkURL, "http", reg, append(extra, "--resources-path", res)...)
	if err != nil {
		return nil, err
	}
	pub, a, err := p.startSidecar("bench-pub", "", "http", reg, "--resources-path", res)
	if err != nil {
		sub.stop()
		return nil, err
	}
	rg := &psRig{sub: sub, pub: pub, profile: pprof}
	rg.client, rg.publish = p.publisher(a.httpURL + "/v1.0/publish/pubsub/")
	return rg, nil
}

// floor starts the pub/sub floor's subscriber, then its publisher.
func (p *psEnv) floor(topic string, extraEnv []string) (*psRig, error) {
	p.sink.reset(topic, 0)
	sub, _, err := p.floorProcess("pubsub-floor-sub", extraEnv, "-pubsub-floor-sub", "127.0.0.1:0", p.redis, psGroup, topic,
		"http://"+p.sinkURL+"/events", itoa(psredis.DefaultConcurrency))
	if err != nil {
		return nil, err
	}
	pub, addr, err := p.floorProcess("pubsub-floor-pub", extraEnv, "-pubsub-floor-pub", "127.0.0.1:0", p.redis)
	if err != nil {
		sub.stop()
		return nil, err
	}
	rg := &psRig{sub: sub, pub: pub}
	rg.client, rg.publish = p.publisher("http://" + addr + "/publish/")
	return rg, nil
}

// publisher POSTs events to base+topic with a client of o.Conns
// keep-alive connections.
func (p *psEnv) publisher(base string) (*http.Client, func(context.Context, string, []byte) error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: p.o.Conns, MaxIdleConnsPerHost: p.o.Conns, MaxConnsPerHost: p.o.Conns}}
	return client, func(ctx context.Context, topic string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+topic, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("publish: HTTP %d", resp.StatusCode)
		}
		return nil
	}
}

// drive publishes at l's rate to topic, each event carrying the time just
// before its publish call.
func (p *psEnv) drive(rg *psRig, topic string, l load) *stats {
	return attackFunc(func(ctx context.Context) error {
		return rg.publish(ctx, topic, eventBody(p.o.Size, time.Now()))
	}, l)
}

// drainWait is how long the events published are given to arrive.
const drainWait = 60 * time.Second

// measure waits for the subscription to deliver, warms it up, then
// measures at the fixed rate and flat out.
func (p *psEnv) measure(rg *psRig, topic string, profiled bool) (*psSample, profile, error) {
	o, k := p.o, p.sink
	if err := p.ready(rg, topic); err != nil {
		return nil, profile{}, err
	}
	if o.Warmup > 0 {
		k.reset(topic, 0)
		w := p.drive(rg, topic, load{Rate: o.Rate, Conns: o.Conns, Duration: o.Warmup})
		k.waitFor(w.Requests-w.Errors, drainWait)
	}
	k.reset(topic, 0)
	var captured <-chan profile
	if rg.profile != "" {
		captured = captureProfile(rg.profile, o.Duration, o.ProfileOut)
	}
	if err := p.admin.ConfigResetStat(context.Background()).Err(); err != nil {
		return nil, profile{}, err
	}
	pub0, sub0, r0 := rg.pub.cpu(), rg.sub.cpu(), p.redisP.cpu()
	s := &psSample{}
	s.Publish = p.drive(rg, topic, load{Rate: o.Rate, Conns: o.Conns, Duration: o.Duration})
	ok := s.Publish.Requests - s.Publish.Errors
	k.waitFor(ok, drainWait)
	s.PubCPU, s.SubCPU, s.RedisCPU = rg.pub.cpu()-pub0, rg.sub.cpu()-sub0, p.redisP.cpu()-r0
	s.PeakRSS = rg.sub.peakRSS()
	var err error
	if s.Commands, err = p.commandCalls(); err != nil {
		return nil, profile{}, err
	}
	if s.Deliver, _, err = k.take(); err != nil {
		return nil, profile{}, err
	}
	s.Lost = max(0, ok-s.Deliver.Requests)
	var prof profile
	if captured != nil {
		prof = <-captured
	}

	k.reset(topic, 0)
	t0 := time.Now()
	m := p.drive(rg, topic, load{Conns: o.Conns, Duration: o.MaxFor})
	s.MaxPublished = m.Requests - m.Errors
	k.waitFor(s.MaxPublished, drainWait)
	got, last, err := k.take()
	if err != nil {
		return nil, profile{}, err
	}
	if d := last.Sub(t0); d > 0 {
		s.MaxRate = float64(got.Requests) / d.Seconds()
	}
	if s.Publish.FirstErr != "" || m.FirstErr != "" {
		return nil, profile{}, fmt.Errorf("publishing: %d errors, the first: %s%s", s.Publish.Errors+m.Errors, s.Publish.FirstErr, m.FirstErr)
	}
	return s, prof, nil
}

// ready publishes one event and waits for it at the app: the subscription
// is in place.
func (p *psEnv) ready(rg *psRig, topic string) error {
	p.sink.reset(topic, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rg.publish(ctx, topic, eventBody(p.o.Size, time.Now())); err != nil {
		return err
	}
	if !p.sink.waitFor(1, 30*time.Second) {
		return fmt.Errorf("no event reached the app 30 s after the first publish to %s\nsubscriber: %s", topic, rg.sub.Out.String())
	}
	return nil
}

// slowQueueDepths are the subscriber's queueDepth values under a slow
// subscriber: a small one, the default (0), and one larger than the
// backlog, to show what the bound holds back.
var slowQueueDepths = []int{10, 0, 10000}

// slowSample is the slow subscriber with one queueDepth.
type slowSample struct {
	QueueDepth          int
	Rate                int           // events published a second
	Delay               time.Duration // the handler's time per event
	Published, Received int
	IdleRSS, PeakRSS    int64
	RSS                 []int64 // the subscriber sidecar's RSS at each quarter of the run
	Pending             int64   // read by the subscriber and not acknowledged, at the end
	Lag                 int64   // in the stream and not yet read by the group, at the end
	Stream              int64   // XLEN
}

// slow publishes for o.Duration at o.Rate (at least 1 a second) to a
// subscriber whose handler takes ten times the publisher's share of its
// concurrency, and samples the subscriber sidecar's RSS.
func (p *psEnv) slow(queueDepth int) (slowSample, error) {
	o := p.o
	s := slowSample{QueueDepth: queueDepth, Rate: max(1, o.Rate)}
	s.Delay = time.Duration(10 * psredis.DefaultConcurrency * int(time.Second) / s.Rate)
	topic := fmt.Sprintf("bench-slow-%d", queueDepth)
	rg, err := p.sidecars(topic, queueDepth, false)
	if err != nil {
		return s, err
	}
	defer rg.stop()
	if err := p.ready(rg, topic); err != nil {
		return s, err
	}
	s.IdleRSS = rg.sub.memory("VmRSS")
	p.sink.reset(topic, s.Delay)
	var (
		mu      sync.Mutex
		samples []int64
	)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				samples = append(samples, rg.sub.memory("VmRSS"))
				mu.Unlock()
			}
		}
	}()
	st := p.drive(rg, topic, load{Rate: s.Rate, Conns: o.Conns, Duration: o.Duration})
	close(done)
	<-sampled
	s.Published, s.Received = st.Requests-st.Errors, p.sink.received()
	s.PeakRSS = rg.sub.peakRSS()
	for q := 1; q <= 4 && len(samples) > 0; q++ {
		s.RSS = append(s.RSS, samples[min(len(samples)-1, q*len(samples)/4)])
	}
	ctx := context.Background()
	pend, err := p.admin.XPending(ctx, topic, psGroup).Result()
	if err != nil {
		return s, fmt.Errorf("XPENDING: %w", err)
	}
	s.Pending = pend.Count
	groups, err := p.admin.XInfoGroups(ctx, topic).Result()
	if err != nil {
		return s, fmt.Errorf("XINFO GROUPS: %w", err)
	}
	for _, g := range groups {
		if g.Name == psGroup {
			s.Lag = g.Lag
		}
	}
	if s.Stream, err = p.admin.XLen(ctx, topic).Result(); err != nil {
		return s, err
	}
	p.sink.setDelay(0)
	if st.FirstErr != "" {
		return s, fmt.Errorf("publishing: %d errors, the first: %s", st.Errors, st.FirstErr)
	}
	return s, nil
}

// commandCalls is how many times Redis ran each command since its
// statistics were last reset, from INFO commandstats (the harness's own
// CONFIG RESETSTAT and INFO not counted).
func (p *psEnv) commandCalls() (map[string]int64, error) {
	info, err := p.admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info), nil
}

// parseCommandStats reads the calls of each command of INFO commandstats
// ("cmdstat_xadd:calls=3,usec=..."), upper-cased.
func parseCommandStats(info string) map[string]int64 {
	calls := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		name = strings.ToUpper(name)
		if name == "CONFIG|RESETSTAT" || name == "INFO" {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				calls[name] = n
			}
		}
	}
	return calls
}
