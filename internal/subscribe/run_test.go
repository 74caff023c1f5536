package subscribe

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

// waitFor waits until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProgrammaticHTTP: the app's own subscriptions are read from GET
// /dapr/subscribe once it is healthy, not before, and only once; its
// events then reach it.
func TestProgrammaticHTTP(t *testing.T) {
	app := newHTTPApp(t, nil)
	app.setHealthy(false)
	app.setSubscribe(`[{"pubsubname":"pubsub","topic":"orders","routes":{"rules":[{"match":"event.data.big","path":"/big"}],"default":"/orders"}}]`)
	e := newEnv(t, app.addr(), envOptions{invoke: invoke.Config{Health: probed}})
	s, _ := e.run(e.config())
	waitFor(t, "health probes", func() bool { _, probes := app.counts(); return probes >= 3 })
	if reads, _ := app.counts(); reads != 0 {
		t.Fatalf("GET /dapr/subscribe was called %d times while the app was unhealthy", reads)
	}
	app.setHealthy(true)
	e.publish("orders", `{"big":true}`, nil)
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	if c := <-app.got; c.Path != "/big" {
		t.Errorf("delivered to %s", c.Path)
	}
	want := []Subscription{{PubsubName: "pubsub", Topic: "orders", Type: Programmatic, Rules: []Rule{{Match: "event.data.big", Path: "/big"}, {Path: "/orders"}}}}
	if got := s.Subscriptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("Subscriptions() = %+v", got)
	}
	e.waitLog(`msg="app subscribed" pubsub=pubsub topic=orders`)
	if reads, _ := app.counts(); reads != 1 {
		t.Errorf("GET /dapr/subscribe was called %d times", reads)
	}
}

// TestProgrammaticRefused: an answer that cannot be read is an error in
// the log naming what is wrong, and the sidecar goes on without the app's
// subscriptions: the declared ones still deliver.
func TestProgrammaticRefused(t *testing.T) {
	for _, c := range []struct {
		answer, log string
	}{
		{`{"pubsubname":"pubsub","topic":"x","route":"/x"}`, `the answer is not a JSON array of subscriptions`},
		{`[{"pubsubname":"pubsub","topic":"x","routes":{"rules":[{"match":"event.data.n >","path":"/x"}]}}]`, `rule 0: match \"event.data.n >\" does not compile`},
	} {
		t.Run(c.log, func(t *testing.T) {
			app := newHTTPApp(t, nil)
			app.setSubscribe(c.answer)
			e := newEnv(t, app.addr(), envOptions{})
			s, _ := e.run(e.config(orders()))
			e.waitLog(`level=ERROR msg="the app's subscriptions are refused; the sidecar goes on without them" from="GET /dapr/subscribe"`)
			e.waitLog(c.log)
			e.publish("orders", `{"n":1}`, nil)
			if r := e.broker.next(t); r.err != nil {
				t.Fatal(r.err)
			}
			if got := s.Subscriptions(); len(got) != 1 || got[0].Type != Declarative {
				t.Errorf("Subscriptions() = %+v", got)
			}
		})
	}
}

// TestSubscribeWaitsForItsPubsub: without pub/sub components the app is
// not asked for its subscriptions (as daprd); once one is added, it is,
// and a subscription to a pubsub that was not there starts.
func TestSubscribeWaitsForItsPubsub(t *testing.T) {
	app := newHTTPApp(t, nil)
	app.setSubscribe(`[{"pubsubname":"pubsub","topic":"orders","route":"/orders"}]`)
	e := newEnv(t, app.addr(), envOptions{noBroker: true})
	e.run(e.config(Subscription{PubsubName: "pubsub", Topic: "declared", Rules: []Rule{{Path: "/declared"}}}))
	e.waitLog(`msg="cannot subscribe yet; trying again" pubsub=pubsub topic=declared`)
	if reads, _ := app.counts(); reads != 0 {
		t.Fatalf("GET /dapr/subscribe was called %d times with no pub/sub component", reads)
	}
	if err := e.svc.Add(pubsub.BrokerConfig{Name: "pubsub", Broker: e.broker}); err != nil {
		t.Fatal(err)
	}
	e.publish("orders", `{"n":1}`, nil)
	e.publish("declared", `{"n":2}`, nil)
	for range 2 {
		if r := e.broker.next(t); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if strings.Count(e.logs.String(), "cannot subscribe yet") != 1 {
		t.Errorf("the failure to subscribe was logged more than once:\n%s", e.logs)
	}
}

// TestSubscribeRefusedByScopes: a subscription the component's
// subscriptionScopes refuse is not started, and the log names its topic
// and the field; the others deliver.
func TestSubscribeRefusedByScopes(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{noBroker: true})
	access := pubsub.ParseAccess(map[string]string{pubsub.MetadataSubscriptionScopes: "checkout=audit"}, "checkout")
	if err := e.svc.Add(pubsub.BrokerConfig{Name: "pubsub", Broker: e.broker, Access: access}); err != nil {
		t.Fatal(err)
	}
	e.run(e.config(orders(), Subscription{PubsubName: "pubsub", Topic: "audit", Rules: []Rule{{Path: "/audit"}}, Type: Declarative}))
	e.waitLog(`msg="subscription not started: the component's topic access refuses it" pubsub=pubsub topic=orders`)
	e.waitLog(`the component's subscriptionScopes limit this app to other topics`)
	e.publish("orders", `{"n":1}`, nil)
	e.publish("audit", `{"n":2}`, nil)
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	if c := <-app.got; c.Path != "/audit" {
		t.Errorf("delivered to %s; want /audit only", c.Path)
	}
	if n := app.callCount(); n != 1 {
		t.Errorf("the app got %d deliveries; want 1 (audit)", n)
	}
}

// TestPausedWhileUnhealthy: while the app fails its health checks the
// subscriptions are stopped: the broker hands out nothing, and what is
// published waits in it; once the app is healthy all of it is delivered.
func TestPausedWhileUnhealthy(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{invoke: invoke.Config{Health: probed}})
	e.run(e.config(orders()))
	e.publish("orders", `{"n":0}`, nil)
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	app.setHealthy(false)
	e.waitLog("app is unhealthy: pub/sub delivery paused")
	calls := e.broker.handlerCalls()
	const n = 20
	for i := 1; i <= n; i++ {
		e.publish("orders", fmt.Sprintf(`{"n":%d}`, i), nil)
	}
	time.Sleep(100 * time.Millisecond) // a subscriber that kept reading would be handed these by now
	if got := e.broker.handlerCalls(); got != calls {
		t.Fatalf("%d deliveries while the app was unhealthy", got-calls)
	}
	app.setHealthy(true)
	e.waitLog("app is healthy again: pub/sub delivery resumes")
	for range n {
		if r := e.broker.next(t); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := app.callCount(); got != n+1 {
		t.Errorf("the app got %d events, want %d", got, n+1)
	}
}

// TestShutdown: when Run's ctx ends, it stops reading; the delivery in
// flight finishes and its answer counts; the rest stays pending, and the
// next subscriber gets it, every event once.
func TestShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	app := newHTTPApp(t, func(c call, _ int) (int, string) {
		if c.Event["id"] == `{"n":0}` {
			once.Do(func() { close(entered) })
			<-release
		}
		return 200, ""
	})
	e := newEnv(t, app.addr(), envOptions{})
	s, err := New(e.config(orders()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	const n = 10
	for i := range n {
		e.publish("orders", fmt.Sprintf(`{"n":%d}`, i), nil)
	}
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a delivery in flight", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := e.broker.next(t)
	if r.err != nil || idOf(t, r.data) != `{"n":0}` {
		t.Fatalf("the delivery in flight at shutdown: %+v; want it acknowledged", r)
	}
	if got := app.callCount(); got != 1 {
		t.Fatalf("%d calls to the app; only the one in flight was due", got)
	}

	e.run(e.config(orders()))
	seen := map[string]int{}
	for range n - 1 {
		r := e.broker.next(t)
		if r.err != nil {
			t.Fatal(r.err)
		}
		seen[idOf(t, r.data)]++
	}
	for i := 1; i < n; i++ {
		if id := fmt.Sprintf(`{"n":%d}`, i); seen[id] != 1 {
			t.Errorf("event %s delivered %d times by the next subscriber", id, seen[id])
		}
	}
}

// TestShutdownGrace: a delivery still in flight when the grace period is
// over is cut short, and its event stays pending for the next subscriber.
func TestShutdownGrace(t *testing.T) {
	var calls sync.Map
	app := newHTTPApp(t, func(c call, n int) (int, string) {
		if n == 1 {
			calls.Store(n, true)
			<-c.Ctx.Done() // no answer until cut short
		}
		return 200, ""
	})
	e := newEnv(t, app.addr(), envOptions{})
	cfg := e.config(orders())
	cfg.ShutdownGrace = 50 * time.Millisecond
	_, stop := e.run(cfg)
	e.publish("orders", `{"n":1}`, nil)
	waitFor(t, "the delivery", func() bool { _, ok := calls.Load(1); return ok })
	stop()
	if r := e.broker.next(t); r.err == nil {
		t.Fatal("a delivery cut short by shutdown was acknowledged")
	}
	e.waitLog("deliveries still in flight after the shutdown grace period are cut short")
	e.run(e.config(orders()))
	if r := e.broker.next(t); r.err != nil || r.attempt != 2 {
		t.Fatalf("the event after shutdown: %+v; want it delivered again and acknowledged", r)
	}
}

// TestNoEventLost counts every event and every delivery through a
// subscriber that is stopped and replaced midway, with an app that fails
// some tries: each event is acknowledged once the app took it (SUCCESS or
// DROP), never before, and none is lost.
func TestNoEventLost(t *testing.T) {
	const n = 300
	var mu sync.Mutex
	took := map[string]int{} // event -> SUCCESS or DROP answers
	app := newHTTPApp(t, func(c call, try int) (int, string) {
		id := c.Event["id"].(string)
		var i int
		fmt.Sscanf(id, `{"n":%d}`, &i)
		switch {
		case i%7 == 0 && try <= 4: // past one subscriber's three tries
			return 200, `{"status":"RETRY"}`
		case i%5 == 0 && try == 1:
			return 500, ""
		}
		mu.Lock()
		took[id]++
		mu.Unlock()
		if i%11 == 0 {
			return 200, `{"status":"DROP"}`
		}
		return 200, `{"status":"SUCCESS"}`
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 8}})
	_, stop := e.run(e.config(orders()))
	acked := map[string]int{}
	for i := range n {
		e.publish("orders", fmt.Sprintf(`{"n":%d}`, i), nil)
		if i == n/2 {
			stop()
			e.run(e.config(orders()))
		}
	}
	for len(acked) < n {
		r := e.broker.next(t)
		if r.err == nil {
			acked[idOf(t, r.data)]++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for id, k := range acked {
		if took[id] == 0 {
			t.Errorf("event %s acknowledged though the app never took it", id)
		}
		dups += k - 1
	}
	if len(took) != n {
		t.Errorf("the app took %d events of %d", len(took), n)
	}
	t.Logf("%d events, %d deliveries to the app, %d acknowledged more than once", n, app.callCount(), dups)
}
