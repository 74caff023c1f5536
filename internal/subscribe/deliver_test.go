package subscribe

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandem-run/tandem/internal/invoke"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/pkg/pubsub"
	"github.com/tandem-run/tandem/pkg/pubsub/memory"
)

func orders(rules ...Rule) Subscription {
	if len(rules) == 0 {
		rules = []Rule{{Path: "/orders"}}
	}
	return Subscription{PubsubName: "pubsub", Topic: "orders", Rules: rules, Type: Declarative}
}

// idOf is the id of the event in a broker's data.
func idOf(t *testing.T, data string) string {
	t.Helper()
	var ce struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(data), &ce); err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	return ce.ID
}

// TestAnswers: what the app answers decides, as in daprd, whether the
// event is acknowledged (nil from the handler) or stays pending, how often
// it is tried under the retry policy (three tries here), and whether it
// goes to the dead-letter topic.
func TestAnswers(t *testing.T) {
	type answer struct {
		code int
		body string
	}
	for _, c := range []struct {
		name       string
		answers    []answer // the app's answers to the tries, the last repeated
		deadLetter bool     // the subscription has one
		acked      bool
		tries      int
		toDead     bool // the event was published to the dead-letter topic
		status     string
	}{
		{"empty 200", []answer{{200, ""}}, false, true, 1, false, "success"},
		{"SUCCESS", []answer{{200, `{"status":"SUCCESS"}`}}, false, true, 1, false, "success"},
		{"empty status", []answer{{200, `{"status":""}`}}, false, true, 1, false, "success"},
		{"204", []answer{{204, ""}}, false, true, 1, false, "success"},
		{"garbage 2xx body is a success, as in daprd", []answer{{200, `<html>ok</html>`}}, false, true, 1, false, "success"},
		{"JSON without status", []answer{{201, `{"ok":true}`}}, false, true, 1, false, "success"},
		{"DROP", []answer{{200, `{"status":"DROP"}`}}, false, true, 1, false, "drop"},
		{"DROP goes to the dead-letter topic", []answer{{200, `{"status":"DROP"}`}}, true, true, 1, true, "drop"},
		{"404 drops", []answer{{404, "no route"}}, false, true, 1, false, "drop"},
		{"404 drops, not to the dead-letter topic", []answer{{404, ""}}, true, true, 1, false, "drop"},
		{"RETRY then SUCCESS", []answer{{200, `{"status":"RETRY"}`}, {200, `{"status":"SUCCESS"}`}}, false, true, 2, false, "success"},
		{"500 then 200", []answer{{500, "boom"}, {200, ""}}, false, true, 2, false, "success"},
		{"RETRY, retries exhausted: pending", []answer{{200, `{"status":"RETRY"}`}}, false, false, 3, false, "retry"},
		{"unknown status is RETRY", []answer{{200, `{"status":"success"}`}}, false, false, 3, false, "retry"},
		{"500: pending", []answer{{500, ""}}, false, false, 3, false, "retry"},
		{"503: pending", []answer{{503, ""}}, false, false, 3, false, "retry"},
		{"500 with a dead-letter topic", []answer{{500, ""}}, true, true, 3, true, "retry"},
		{"RETRY with a dead-letter topic", []answer{{200, `{"status":"RETRY"}`}}, true, true, 3, true, "retry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := newHTTPApp(t, func(_ call, n int) (int, string) {
				a := c.answers[min(n, len(c.answers))-1]
				return a.code, a.body
			})
			e := newEnv(t, app.addr(), envOptions{})
			sub := orders()
			if c.deadLetter {
				sub.DeadLetterTopic = "orders-dead"
			}
			e.run(e.config(sub))
			e.publish("orders", `{"n":1}`, nil)

			r := e.broker.next(t)
			if acked := r.err == nil; acked != c.acked {
				t.Fatalf("acknowledged %v (%v), want %v", acked, r.err, c.acked)
			}
			if got := app.callCount(); got != c.tries {
				t.Errorf("%d tries, want %d", got, c.tries)
			}
			dead := e.broker.publishedTo("orders-dead")
			if (len(dead) == 1) != c.toDead || len(dead) > 1 {
				t.Errorf("published to the dead-letter topic: %q", dead)
			} else if c.toDead && dead[0] != r.data {
				t.Errorf("the dead-letter topic got %q, not the event %q", dead[0], r.data)
			}
			want := map[string]float64{}
			for n := 1; n <= c.tries; n++ {
				a := c.answers[min(n, len(c.answers))-1]
				want[strings.ToLower(string(pubsub.StatusFromHTTP(a.code, []byte(a.body))))]++
			}
			if want[c.status] == 0 {
				t.Fatalf("the case's last status %q is none of its answers'", c.status)
			}
			for _, status := range []string{"success", "retry", "drop", "error"} {
				if got := e.delivered("orders", status); got != want[status] {
					t.Errorf("tandem_pubsub_delivered_total{status=%q} = %v, want %v", status, got, want[status])
				}
			}
			if got := e.count(evRetried, "orders"); got != float64(c.tries-1) {
				t.Errorf("tandem_pubsub_retried_total = %v, want %d", got, c.tries-1)
			}
			if got, want := e.count(evDeadLettered, "orders"), map[bool]float64{true: 1}[c.toDead]; got != want {
				t.Errorf("tandem_pubsub_dead_lettered_total = %v, want %v", got, want)
			}
		})
	}
}

// TestPendingComesBack: an event left pending (the app said RETRY on
// every try) comes back from the broker, is counted as redelivered, and
// is acknowledged when the app then takes it.
func TestPendingComesBack(t *testing.T) {
	app := newHTTPApp(t, func(_ call, n int) (int, string) {
		if n <= 3 {
			return 200, `{"status":"RETRY"}`
		}
		return 200, `{"status":"SUCCESS"}`
	})
	e := newEnv(t, app.addr(), envOptions{})
	e.run(e.config(orders()))
	e.publish("orders", `{"n":1}`, nil)
	if r := e.broker.next(t); r.err == nil || r.attempt != 1 {
		t.Fatalf("first delivery: %+v; want it left pending", r)
	}
	r := e.broker.next(t)
	if r.err != nil || r.attempt != 2 {
		t.Fatalf("second delivery: %+v; want attempt 2 acknowledged", r)
	}
	if app.callCount() != 4 {
		t.Errorf("%d calls to the app, want 3 tries then 1", app.callCount())
	}
	if got := e.count(evRedelivered, "orders"); got != 1 {
		t.Errorf("tandem_pubsub_redelivered_total = %v, want 1", got)
	}
}

// TestHTTPDelivery: the app gets what daprd sends: a POST of the envelope
// as application/cloudevents+json to the route, the event's metadata and
// pubsubname as headers, the publisher's trace context, and its own app
// token; never a token or header the publisher slipped into the metadata.
func TestHTTPDelivery(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{invoke: invoke.Config{AppToken: "app-secret"}})
	e.run(e.config(orders(Rule{Path: "orders/new"})))
	e.publish("orders", `{"n":1}`, map[string]string{
		"customer": "c1", "dapr-api-token": "forged", "Content-Type": "text/evil", "grpc-timeout": "1S", "bad\nname": "x", "crlf": "a\r\nInjected: yes",
	})
	r := e.broker.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := <-app.got
	h := c.Header
	for name, want := range map[string]string{
		"Content-Type":      "application/cloudevents+json",
		"Pubsubname":        "pubsub",
		"Customer":          "c1",
		"Dapr-Api-Token":    "app-secret",
		"Dapr-Grpc-Timeout": "1S",
		"Traceparent":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Tracestate":        "k=v",
		"Crlf":              "",
		"Injected":          "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s: %q, want %q", name, got, want)
		}
	}
	if c.Path != "/orders/new" {
		t.Errorf("path %q", c.Path)
	}
	if string(c.Body) != r.data {
		t.Errorf("body %s, want the envelope as published %s", c.Body, r.data)
	}
	if c.Event["topic"] != "orders" || c.Event["type"] != "com.dapr.event.sent" {
		t.Errorf("event %v", c.Event)
	}
}

// TestRawPayload: a subscription with rawPayload gets what was published,
// whatever it is, inside an envelope of its own (data_base64), as daprd
// sends it; one without it cannot take an event that is not a CloudEvent:
// it stays pending, or goes to the dead-letter topic.
func TestRawPayload(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{})
	raw := orders()
	raw.Metadata = map[string]string{"rawPayload": "true"}
	plain := Subscription{PubsubName: "pubsub", Topic: "plain", Rules: []Rule{{Path: "/plain"}}, DeadLetterTopic: "plain-dead"}
	strict := Subscription{PubsubName: "pubsub", Topic: "strict", Rules: []Rule{{Path: "/strict"}}}
	e.run(e.config(raw, plain, strict))

	bytes := "\x00\x01 not json \xff"
	e.publish("orders", bytes, map[string]string{"rawPayload": "true"})
	if r := e.broker.next(t); r.err != nil || r.data != bytes {
		t.Fatalf("raw delivery: %+v", r)
	}
	c := <-app.got
	got, err := base64.StdEncoding.DecodeString(fmt.Sprint(c.Event["data_base64"]))
	if err != nil || string(got) != bytes || c.Event["datacontenttype"] != "application/octet-stream" || c.Header.Get("Content-Type") != "application/cloudevents+json" {
		t.Errorf("the app got %v (%v), want the bytes published in data_base64", c.Event, err)
	}

	e.publish("plain", "not a cloud event", map[string]string{"rawPayload": "true"})
	if r := e.broker.next(t); r.err != nil {
		t.Errorf("with a dead-letter topic, an event that is not a CloudEvent: %v", r.err)
	}
	if dead := e.broker.publishedTo("plain-dead"); len(dead) != 1 || dead[0] != "not a cloud event" {
		t.Errorf("dead-letter topic got %q", dead)
	}
	e.publish("strict", "not a cloud event", map[string]string{"rawPayload": "true"})
	if r := e.broker.next(t); r.err == nil || !strings.Contains(r.err.Error(), "not a JSON object") {
		t.Errorf("without a dead-letter topic, an event that is not a CloudEvent: %v; want it pending", r.err)
	}
	if n := app.callCount(); n != 1 {
		t.Errorf("the app got %d calls, want only the raw one", n)
	}
}

// TestExpired: an event whose expiration has passed is acknowledged
// without reaching the app, counted, and sent to the dead-letter topic
// when there is one (as daprd).
func TestExpired(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{})
	sub := orders()
	sub.DeadLetterTopic = "orders-dead"
	e.run(e.config(sub))
	e.publishAt("orders", `{"n":1}`, time.Now().Add(-time.Hour), map[string]string{"ttlInSeconds": "60"})
	e.publishAt("orders", `{"n":2}`, time.Now(), map[string]string{"ttlInSeconds": "3600"})
	for range 2 {
		if r := e.broker.next(t); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if n := app.callCount(); n != 1 {
		t.Errorf("the app got %d events, want the one not expired", n)
	}
	if c := <-app.got; c.Event["data"].(map[string]any)["n"] != 2.0 {
		t.Errorf("the app got %v", c.Event)
	}
	if got := e.count(evExpired, "orders"); got != 1 {
		t.Errorf("tandem_pubsub_expired_total = %v", got)
	}
	if dead := e.broker.publishedTo("orders-dead"); len(dead) != 1 {
		t.Errorf("dead-letter topic got %d events, want the expired one", len(dead))
	}
}

// TestRouting: each event goes to the path of the first rule that holds,
// else the default; one no rule matches is acknowledged without reaching
// the app; one a rule cannot be evaluated for stays pending.
func TestRouting(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{})
	e.run(e.config(orders(
		Rule{Match: `event.data.kind == "widget" && event.data.count > 5`, Path: "/widgets/many"},
		Rule{Match: `event.data.kind == "widget"`, Path: "/widgets"},
	), Subscription{PubsubName: "pubsub", Topic: "payments", Rules: []Rule{
		{Match: `event.type == "com.dapr.event.sent" && event.data.amount > 100`, Path: "/payments/big"},
		{Path: "/payments"},
	}}))
	for _, c := range []struct {
		topic, data, path string
	}{
		{"orders", `{"kind":"widget","count":7}`, "/widgets/many"},
		{"orders", `{"kind":"widget","count":1}`, "/widgets"},
		{"orders", `{"kind":"gadget","count":1}`, ""},
		{"payments", `{"amount":500}`, "/payments/big"},
		{"payments", `{"amount":5}`, "/payments"},
	} {
		before := app.callCount()
		e.publish(c.topic, c.data, nil)
		if r := e.broker.next(t); r.err != nil {
			t.Fatalf("%s: %v", c.data, r.err)
		}
		if c.path == "" {
			if app.callCount() != before {
				t.Errorf("%s reached the app", c.data)
			}
			continue
		}
		if got := <-app.got; got.Path != c.path {
			t.Errorf("%s went to %s, want %s", c.data, got.Path, c.path)
		}
	}
	if got := e.count(evUnrouted, "orders"); got != 1 {
		t.Errorf("tandem_pubsub_unrouted_total = %v", got)
	}
	e.publish("payments", `"just a string"`, nil)
	if r := e.broker.next(t); r.err == nil || !strings.Contains(r.err.Error(), `rule 0: match`) {
		t.Errorf("an event the rule cannot read: %v; want it pending, naming the rule", r.err)
	}
}

// TestAppMaxConcurrency: the app channel's bound (--app-max-concurrency)
// holds for deliveries too, whatever the component's concurrency: the
// deliveries beyond it wait for a slot, and every event arrives.
func TestAppMaxConcurrency(t *testing.T) {
	const n, bound = 40, 2
	var now, most counterMax
	app := newHTTPApp(t, func(call, int) (int, string) {
		now.add(1)
		defer now.add(-1)
		most.max(now.get())
		time.Sleep(2 * time.Millisecond)
		return 200, ""
	})
	e := newEnv(t, app.addr(), envOptions{memory: memory.Config{Concurrency: 8}, invoke: invoke.Config{AppMaxConcurrency: bound}})
	e.run(e.config(orders()))
	for i := range n {
		e.publish("orders", fmt.Sprintf(`{"n":%d}`, i), nil)
	}
	for range n {
		if r := e.broker.next(t); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if m := most.get(); m > bound {
		t.Errorf("%d deliveries at once; --app-max-concurrency is %d", m, bound)
	}
}

// TestTracer: a delivery's span is started with the publisher's trace
// context from the envelope, and ended with the app's answer.
func TestTracer(t *testing.T) {
	app := newHTTPApp(t, func(_ call, n int) (int, string) {
		if n == 1 {
			return 500, ""
		}
		return 200, ""
	})
	e := newEnv(t, app.addr(), envOptions{})
	cfg := e.config(orders())
	tr := &stubTracer{}
	cfg.Tracer = tr
	e.run(cfg)
	e.publish("orders", `{"n":1}`, nil)
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	want := []string{"start pubsub orders 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 k=v", "end SUCCESS <nil>"}
	if strings.Join(tr.calls, "|") != strings.Join(want, "|") {
		t.Errorf("tracer calls %q, want %q", tr.calls, want)
	}
}

// TestDeadLetterOnlyWhatTheAppHad: an event the app could not be given
// (nothing listens on its port) stays pending even with a dead-letter
// topic; one it was given and did not answer within the inbound timeout
// goes there once the retries run out, as daprd sends it.
func TestDeadLetterOnlyWhatTheAppHad(t *testing.T) {
	t.Run("not reached", func(t *testing.T) {
		ln, addr := freeAddr(t)
		ln.Close()
		e := newEnv(t, addr, envOptions{})
		sub := orders()
		sub.DeadLetterTopic = "orders-dead"
		e.run(e.config(sub))
		e.publish("orders", `{"n":1}`, nil)
		if r := e.broker.next(t); r.err == nil {
			t.Fatal("an event the app never got was acknowledged")
		}
		if dead := e.broker.publishedTo("orders-dead"); len(dead) != 0 {
			t.Errorf("an event the app never got went to the dead-letter topic")
		}
		if got := e.delivered("orders", "error"); got != 3 {
			t.Errorf("tandem_pubsub_delivered_total{status=error} = %v, want 3", got)
		}
	})
	for _, dead := range []bool{true, false} {
		t.Run(fmt.Sprintf("timeout, dead-letter topic %v", dead), func(t *testing.T) {
			app := newHTTPApp(t, func(c call, _ int) (int, string) {
				<-c.Ctx.Done()
				return 200, ""
			})
			e := newEnv(t, app.addr(), envOptions{})
			sub := orders()
			if dead {
				sub.DeadLetterTopic = "orders-dead"
			}
			cfg := e.config(sub)
			cfg.Inbound = func(string) *resiliency.Policy {
				return &resiliency.Policy{Timeout: 50 * time.Millisecond, Retry: &resiliency.Retry{Interval: time.Millisecond, MaxRetries: 1}}
			}
			e.run(cfg)
			e.publish("orders", `{"n":1}`, nil)
			r := e.broker.next(t)
			if dead {
				if r.err != nil || len(e.broker.publishedTo("orders-dead")) != 1 {
					t.Errorf("%v, %d to the dead-letter topic; want it there and acknowledged", r.err, len(e.broker.publishedTo("orders-dead")))
				}
			} else if r.err == nil || !strings.Contains(r.err.Error(), "no answer within the inbound timeout of 50ms") {
				t.Errorf("%v; want it pending, saying why", r.err)
			}
			if n := app.callCount(); n != 2 {
				t.Errorf("%d tries, want 2", n)
			}
		})
	}
}

// TestNoSlotIsNotReached: a delivery whose tries all wait in vain for a
// slot of --app-max-concurrency (another delivery holds it) never reached
// the app: it stays pending even with a dead-letter topic.
func TestNoSlotIsNotReached(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	app := newHTTPApp(t, func(c call, _ int) (int, string) {
		if c.Path == "/slow" {
			close(entered)
			<-release
		}
		return 200, ""
	})
	e := newEnv(t, app.addr(), envOptions{invoke: invoke.Config{AppMaxConcurrency: 1}})
	slow := newRecBroker(memory.Config{})
	if err := e.svc.Add(pubsub.BrokerConfig{Name: "slow", Broker: slow}); err != nil {
		t.Fatal(err)
	}
	sub := orders()
	sub.DeadLetterTopic = "orders-dead"
	cfg := e.config(sub, Subscription{PubsubName: "slow", Topic: "slow", Rules: []Rule{{Path: "/slow"}}})
	cfg.Inbound = func(name string) *resiliency.Policy {
		if name == "slow" {
			return nil
		}
		return &resiliency.Policy{Timeout: 50 * time.Millisecond, Retry: &resiliency.Retry{Interval: time.Millisecond, MaxRetries: 1}}
	}
	e.run(cfg)
	b, _ := pubsub.Envelope(pubsub.Publication{AppID: "shop", PubsubName: "slow", Topic: "slow", Data: []byte("{}")})
	if err := e.svc.Publish(t.Context(), "slow", &pubsub.Message{Topic: "slow", Data: b}); err != nil {
		t.Fatal(err)
	}
	<-entered
	e.publish("orders", `{"n":1}`, nil)
	if r := e.broker.next(t); r.err == nil || !strings.Contains(r.err.Error(), "--app-max-concurrency") {
		t.Errorf("%v; want it pending for want of a slot", r.err)
	}
	if dead := e.broker.publishedTo("orders-dead"); len(dead) != 0 {
		t.Error("an event that never reached the app went to the dead-letter topic")
	}
	close(release)
	if r := slow.next(t); r.err != nil {
		t.Fatal(r.err)
	}
}
