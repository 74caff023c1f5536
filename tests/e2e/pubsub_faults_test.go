package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tandem-run/tandem/internal/testutil/proc"
	"github.com/tandem-run/tandem/internal/testutil/redisserver"
	"github.com/tandem-run/tandem/internal/testutil/resources"
)

// The faults of the pub/sub contract, end to end: real sidecars, a real
// redis-server, and testapps that write every delivery to a file as it
// starts and as it ends (so that the file outlives a SIGKILL of the app,
// and two deliveries of one event at the same time show). Each test counts
// every publish the publisher acknowledged (204) and every delivery, and
// requires every acknowledged event delivered at least once, and no event
// delivered twice at the same time; duplicates are counted and logged.

// faultEvents is how many events a fault test publishes: fewer under
// -short, but enough for deliveries to be in flight when the fault comes.
func faultEvents(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

// ledgerApp is a subscribing testapp that writes its deliveries to a file
// of its own.
type ledgerApp struct {
	port int
	file string
	p    *proc.Proc
}

// ledgerApp starts a testapp subscribed to topic of pubsub "pubsub" that
// records its deliveries in a file; port 0 is a free one.
func (w *world) ledgerApp(name, topic string, port int) *ledgerApp {
	w.t.Helper()
	pt := proc.For(w.t)
	if port == 0 {
		port = pt.FreePort()
	}
	a := &ledgerApp{port: port, file: filepath.Join(w.t.TempDir(), "deliveries")}
	a.start(w.t, name, topic)
	return a
}

// start starts the app on its port, appending to its file.
func (a *ledgerApp) start(t *testing.T, name, topic string) {
	t.Helper()
	subs := fmt.Sprintf(`[{"pubsubname":"pubsub","topic":%q,"route":"/events/%s"}]`, topic, topic)
	pt := proc.For(t)
	a.p = pt.Start(name, testappBin, []string{"APP_PORT=" + itoa(a.port), "SUBSCRIBE=" + subs, "DELIVERIES_FILE=" + a.file})
	pt.WaitTCP("127.0.0.1:"+itoa(a.port), listenWait)
}

// delivery is one delivery of an event to a ledgerApp.
type delivery struct {
	d          string // <pid>-<seq>
	pid        int
	id         string
	start, end int64 // wall clock, ns; end 0: not ended
	status     string
}

// ledger reads the deliveries the files hold.
func ledger(t *testing.T, files ...string) []*delivery {
	t.Helper()
	var out []*delivery
	for _, name := range files {
		f, err := os.Open(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		byD := map[string]*delivery{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct {
				D, ID, Status string
				Start, End    int64
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				continue // a line cut short by a SIGKILL is not one the app wrote
			}
			if l.Start != 0 {
				pid, _ := strconv.Atoi(strings.Split(l.D, "-")[0])
				d := &delivery{d: l.D, pid: pid, id: l.ID, start: l.Start}
				byD[l.D] = d
				out = append(out, d)
			} else if d := byD[l.D]; d != nil {
				d.end, d.status = l.End, l.Status
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// tally is what the deliveries came to for a set of events.
type tally struct {
	deliveries int            // in all
	done       map[string]int // deliveries answered SUCCESS, by event id
	started    map[string]int // deliveries, by event id
	inFlight   int            // deliveries not ended
}

func tallyOf(ds []*delivery) tally {
	tl := tally{done: map[string]int{}, started: map[string]int{}}
	for _, d := range ds {
		tl.deliveries++
		tl.started[d.id]++
		switch {
		case d.end == 0:
			tl.inFlight++
		case d.status == "SUCCESS":
			tl.done[d.id]++
		}
	}
	return tl
}

// missing returns the ids of ids not yet delivered with SUCCESS.
func (tl tally) missing(ids []string) []string {
	var out []string
	for _, id := range ids {
		if tl.done[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// waitDelivered waits until every one of ids was delivered with SUCCESS
// to one of the apps, and returns the deliveries.
func waitDelivered(t *testing.T, ids []string, bound time.Duration, apps ...*ledgerApp) []*delivery {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ds := ledgerOf(t, apps...)
		miss := tallyOf(ds).missing(ids)
		if len(miss) == 0 {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events never delivered within %s: %s", len(miss), len(ids), bound, head(miss))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ledgerOf(t *testing.T, apps ...*ledgerApp) []*delivery {
	t.Helper()
	files := make([]string, len(apps))
	for i, a := range apps {
		files[i] = a.file
	}
	return ledger(t, files...)
}

// head is the start of a list of ids, for messages.
func head(ids []string) string {
	if len(ids) > 10 {
		return strings.Join(ids[:10], " ") + " ..."
	}
	return strings.Join(ids, " ")
}

// checkNoOverlap fails t for two deliveries of one event at the same
// time. A delivery that did not end ended when its process died (dead,
// by pid), or is still running.
func checkNoOverlap(t *testing.T, ds []*delivery, dead map[int]int64) {
	t.Helper()
	byID := map[string][]*delivery{}
	for _, d := range ds {
		byID[d.id] = append(byID[d.id], d)
	}
	end := func(d *delivery) int64 {
		switch {
		case d.end != 0:
			return d.end
		case dead[d.pid] != 0:
			return dead[d.pid]
		}
		return math.MaxInt64
	}
	for id, ds := range byID {
		slices.SortFunc(ds, func(a, b *delivery) int { return cmp.Compare(a.start, b.start) })
		for i := 1; i < len(ds); i++ {
			for _, prev := range ds[:i] {
				if ds[i].start < end(prev) {
					t.Errorf("event %s delivered twice at the same time: delivery %s started %s into delivery %s (which %s)",
						id, ds[i].d, time.Duration(ds[i].start-prev.start), prev.d, endedAt(prev, end(prev)))
				}
			}
		}
	}
}

func endedAt(d *delivery, end int64) string {
	if end == math.MaxInt64 {
		return "had not ended"
	}
	return fmt.Sprintf("ended after %s, %s", time.Duration(end-d.start), cmpStatus(d.status))
}

func cmpStatus(s string) string {
	if s == "" {
		return "its process killed"
	}
	return "answered " + s
}

// report logs the counts of a fault test: acknowledged publishes, the
// failed ones, deliveries, and the events delivered more than once.
func report(t *testing.T, what string, p *publisher, ds []*delivery) tally {
	t.Helper()
	acked, failed := p.counts()
	tl := tallyOf(ds)
	dups, extra := 0, 0
	for id, n := range tl.started {
		if n > 1 {
			dups++
			extra += n - 1
			t.Logf("event %s delivered %d times", id, n)
		}
	}
	t.Logf("%s: %d publishes acknowledged, %d failed; %d deliveries; %d events delivered more than once (%d extra deliveries)",
		what, len(acked), failed, tl.deliveries, dups, extra)
	return tl
}

// publisher publishes numbered events through a sidecar and counts the
// acknowledged (204) ones by the id it gives them, and the others.
type publisher struct {
	t      *testing.T
	s      *sidecar
	topic  string
	client *http.Client

	mu     sync.Mutex
	acked  []string
	failed int
	codes  map[string]int // the failed ones' answers
	next   int
}

func newPublisher(t *testing.T, s *sidecar, topic string) *publisher {
	return &publisher{t: t, s: s, topic: topic, client: &http.Client{Timeout: 20 * time.Second}, codes: map[string]int{}}
}

// publish publishes the next event, with data's fields and n, under the
// id ev-<n>, and reports whether it was acknowledged.
func (p *publisher) publish(data string) bool {
	p.mu.Lock()
	n := p.next
	p.next++
	p.mu.Unlock()
	id := "ev-" + itoa(n)
	body := fmt.Sprintf(`{"n":%d%s}`, n, data)
	req, _ := http.NewRequest("POST", p.s.url+"/v1.0/publish/pubsub/"+p.topic+"?metadata.cloudevent.id="+id, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	answer := ""
	if err != nil {
		answer = "no answer"
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answer = itoa(resp.StatusCode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if answer == "204" {
		p.acked = append(p.acked, id)
		return true
	}
	p.failed++
	p.codes[answer]++
	return false
}

// counts returns the acknowledged ids and how many publishes failed.
func (p *publisher) counts() ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acked), p.failed
}

// run publishes every interval until stop is closed, in a goroutine; the
// returned channel is closed when it has stopped.
func (p *publisher) run(data string, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.publish(data)
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return done
}

// waitUntil polls cond until it holds, failing t after bound.
func waitUntil(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The subscribing app SIGKILLed with deliveries in its handlers while
// events come, and started again: every acknowledged event is delivered
// (those the app was handling when it died, again), and never two
// deliveries of one event at a time.
func TestPubSubFaultAppKilled(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr,
		"processingTimeout", "2s", "redeliverInterval", "200ms")}
	pub, _ := w.pubsubSidecar("shop", files)
	app := w.ledgerApp("shipping-app", "orders", 0)
	sub, _ := w.pubsubSidecarApp("shipping", app.port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	// Each delivery takes 250 ms, ten at a time (the component's
	// concurrency): the first half is still being delivered when the app
	// dies.
	n := faultEvents(160, 40)
	p := newPublisher(t, pub, "orders")
	for range n / 2 {
		if !p.publish(`,"sleep":"250ms"`) {
			t.Fatalf("publish with everything up failed: %v", p.codes)
		}
	}
	waitUntil(t, "deliveries in the app's handlers", time.Minute, func() bool {
		tl := tallyOf(ledger(t, app.file))
		return len(tl.done) >= 3 && tl.inFlight > 0
	})
	pid := app.p.Cmd.Process.Pid
	_ = app.p.Stop(syscall.SIGKILL, 10*time.Second)
	dead := map[int]int64{pid: time.Now().UnixNano()}
	killedInFlight := tallyOf(ledger(t, app.file)).inFlight
	// The second half is published with the app down, and the app started
	// again once the sidecar has failed to reach it.
	for range n - n/2 {
		if !p.publish(`,"sleep":"250ms"`) {
			t.Fatalf("publish with the app down failed: %v", p.codes)
		}
	}
	waitUntil(t, "the sidecar to fail a delivery to the dead app", time.Minute, func() bool {
		return strings.Contains(sub.Out.String(), "connection refused")
	})
	app.start(t, "shipping-app (again)", "orders")

	acked, _ := p.counts()
	ds := waitDelivered(t, acked, 3*time.Minute, app)
	checkNoOverlap(t, ds, dead)
	report(t, "app killed", p, ds)
	t.Logf("the app was killed with %d deliveries in its handlers", killedInFlight)
	if killedInFlight == 0 {
		t.Errorf("no delivery was in the app's handlers when it was killed")
	}
}

// warnLines returns the lines of out at level WARN or ERROR.
func warnLines(out string) []string {
	var lines []string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	return lines
}

// maxOutageLines bounds the warnings a sidecar writes about a Redis
// outage, however long it lasts and however many calls fail in it.
const maxOutageLines = 8

// Redis killed and started again (append-only file, fsync on every write)
// while events are published and delivered: the publishes in the outage
// fail (not 204, counted), every acknowledged event is delivered once
// Redis is back, and each sidecar writes a handful of lines about it,
// not one per failure.
func TestPubSubFaultRedisRestarted(t *testing.T) {
	srv := redisserver.StartDurable(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr,
		"processingTimeout", "2s", "redeliverInterval", "200ms", "dialTimeout", "300ms")}
	pub, _ := w.pubsubSidecar("shop", files)
	app := w.ledgerApp("shipping-app", "orders", 0)
	sub, _ := w.pubsubSidecarApp("shipping", app.port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	n := faultEvents(100, 25) // acknowledged before the outage, and as many after
	p := newPublisher(t, pub, "orders")
	stop := make(chan struct{})
	stopped := p.run(`,"sleep":"50ms"`, 10*time.Millisecond, stop)
	var once sync.Once
	halt := func() { once.Do(func() { close(stop); <-stopped }) }
	defer halt()
	waitUntil(t, "publishes and deliveries before the outage", time.Minute, func() bool {
		acked, _ := p.counts()
		return len(acked) >= n && len(tallyOf(ledger(t, app.file)).done) >= n/4
	})
	pubMark, subMark := len(pub.Out.String()), len(sub.Out.String())
	srv.Stop()
	ackedBefore, _ := p.counts()
	waitUntil(t, "publishes failing in the outage", time.Minute, func() bool {
		_, failed := p.counts()
		return failed >= 20
	})
	// Long enough for the reader's backoff to reach its bound, and the
	// pending entries' idle time to pass processingTimeout.
	time.Sleep(3 * time.Second)
	_, failedIn := p.counts()
	srv.Restart(t)
	waitUntil(t, "publishes acknowledged after the outage", time.Minute, func() bool {
		acked, _ := p.counts()
		return len(acked) >= len(ackedBefore)+n
	})
	halt()

	acked, failed := p.counts()
	ds := waitDelivered(t, acked, 3*time.Minute, app)
	checkNoOverlap(t, ds, nil)
	report(t, "Redis restarted", p, ds)
	t.Logf("in the outage %d publishes failed (%v); %d acknowledged before it, %d after",
		failedIn, p.codes, len(ackedBefore), len(acked)-len(ackedBefore))
	if failed == 0 {
		t.Errorf("no publish failed with Redis down")
	}
	if p.codes["204"] != 0 || p.codes["no answer"] != 0 {
		t.Errorf("publishes in the outage: %v; want each answered with an error", p.codes)
	}
	for _, s := range []struct {
		name string
		out  string
	}{{"publisher", pub.Out.String()[pubMark:]}, {"subscriber", sub.Out.String()[subMark:]}} {
		lines := warnLines(s.out)
		t.Logf("the %s sidecar wrote %d warnings about the outage", s.name, len(lines))
		if len(lines) > maxOutageLines {
			t.Errorf("the %s sidecar wrote %d warnings about the outage (at most %d): %s", s.name, len(lines), maxOutageLines, head(lines))
		}
	}
}

// Redis flushed (FLUSHALL) while a subscriber has a backlog: the consumer
// group is created again, and every event published after the flush is
// delivered. The acknowledged events the flush deleted before anyone read
// them are counted and reported: they are gone from the broker.
func TestPubSubFaultRedisFlushed(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	// One delivery at a time, and one event queued: the rest of the
	// backlog is in the stream only, where the flush deletes it.
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr,
		"processingTimeout", "2s", "redeliverInterval", "200ms", "concurrency", "1", "queueDepth", "1")}
	pub, _ := w.pubsubSidecar("shop", files)
	app := w.ledgerApp("shipping-app", "orders", 0)
	sub, _ := w.pubsubSidecarApp("shipping", app.port, files)
	waitMetadata(t, sub, `"type":"PROGRAMMATIC"`)

	n := faultEvents(40, 16)
	p := newPublisher(t, pub, "orders")
	for range n {
		if !p.publish(`,"sleep":"200ms"`) {
			t.Fatalf("publish failed: %v", p.codes)
		}
	}
	waitUntil(t, "the first deliveries", time.Minute, func() bool {
		return len(tallyOf(ledger(t, app.file)).done) >= 2
	})
	rc := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before, _ := p.counts()
	for range n {
		if !p.publish(`,"sleep":"10ms"`) {
			t.Fatalf("publish after the flush failed: %v", p.codes)
		}
	}
	acked, _ := p.counts()
	after := acked[len(before):]
	ds := waitDelivered(t, after, 3*time.Minute, app)
	checkNoOverlap(t, ds, nil)
	tl := report(t, "Redis flushed", p, ds)
	lost := tl.missing(before)
	t.Logf("of the %d events acknowledged before the flush, %d were delivered and %d deleted by it, never delivered: %s",
		len(before), len(before)-len(lost), len(lost), head(lost))
	groups, err := rc.XInfoGroups(context.Background(), "orders").Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "shipping" {
		t.Errorf("consumer groups of orders after the flush: %+v, %v; want shipping's, created again", groups, err)
	}
	if c := strings.Count(sub.Out.String(), "consumer group was gone"); c != 1 {
		t.Errorf("the subscriber said %d times that the consumer group was gone; want once", c)
	}
}

// A handler slower than the component's processingTimeout (1 s, the
// handler 3 s), with two replicas of the subscriber sharing the consumer
// group: no event is delivered a second time while its first delivery is
// in flight (the broker holding it keeps its idle time fresh, so the other
// replica does not claim it).
func TestPubSubFaultSlowHandler(t *testing.T) {
	srv := redisserver.Start(t)
	w := newWorld(t)
	files := map[string][]byte{"pubsub.yaml": resources.PubSubYAML("pubsub", "pubsub.redis", "redisHost", srv.Addr,
		"processingTimeout", "1s", "redeliverInterval", "200ms")}
	pub, _ := w.pubsubSidecar("shop", files)
	a := w.ledgerApp("shipping-app-a", "orders", 0)
	b := w.ledgerApp("shipping-app-b", "orders", 0)
	sa, _ := w.pubsubSidecarApp("shipping", a.port, files)
	sb, _ := w.pubsubSidecarApp("shipping", b.port, files)
	waitMetadata(t, sa, `"type":"PROGRAMMATIC"`)
	waitMetadata(t, sb, `"type":"PROGRAMMATIC"`)

	n := faultEvents(12, 4)
	p := newPublisher(t, pub, "orders")
	for range n {
		if !p.publish(`,"sleep":"3s"`) {
			t.Fatalf("publish failed: %v", p.codes)
		}
	}
	acked, _ := p.counts()
	ds := waitDelivered(t, acked, 3*time.Minute, a, b)
	// A second delivery, were there one, would start within a
	// redeliverInterval of processingTimeout: wait past it.
	time.Sleep(2 * time.Second)
	ds = ledgerOf(t, a, b)
	checkNoOverlap(t, ds, nil)
	report(t, "slow handler", p, ds)
	t.Logf("deliveries to replica a: %d, to replica b: %d", len(ledger(t, a.file)), len(ledger(t, b.file)))
}
