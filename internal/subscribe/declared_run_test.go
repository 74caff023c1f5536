package subscribe

import (
	"reflect"
	"strings"
	"testing"
)

// TestSetDeclared: while the subscriber runs, a new declared subscription
// starts, a changed one is delivered to its new route, a removed one
// stops, and one that is not valid is refused and changes nothing.
func TestSetDeclared(t *testing.T) {
	app := newHTTPApp(t, nil)
	e := newEnv(t, app.addr(), envOptions{})
	s, _ := e.run(e.config())
	deliver := func(data, wantPath string) {
		t.Helper()
		e.publish("orders", data, nil)
		if r := e.broker.next(t); r.err != nil {
			t.Fatal(r.err)
		}
		if c := <-app.got; c.Path != wantPath {
			t.Errorf("%s delivered to %s; want %s", data, c.Path, wantPath)
		}
	}

	if err := s.SetDeclared([]Subscription{orders(Rule{Path: "/a"})}); err != nil {
		t.Fatal(err)
	}
	e.waitLog(`msg=subscribed pubsub=pubsub topic=orders type=DECLARATIVE`)
	deliver(`{"n":1}`, "/a")

	if err := s.SetDeclared([]Subscription{orders(Rule{Path: "/b"})}); err != nil {
		t.Fatal(err)
	}
	e.waitLog(`msg=unsubscribed pubsub=pubsub topic=orders type=DECLARATIVE`)
	waitFor(t, "the new route", func() bool { return strings.Count(e.logs.String(), "msg=subscribed") == 2 })
	deliver(`{"n":2}`, "/b")

	bad := orders(Rule{Match: "event.type ==", Path: "/c"})
	if err := s.SetDeclared([]Subscription{bad}); err == nil || !strings.Contains(err.Error(), `rule 0: match "event.type ==" does not compile`) {
		t.Fatalf("SetDeclared(bad rule) = %v", err)
	}
	if got, want := s.Subscriptions(), []Subscription{orders(Rule{Path: "/b"})}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a refused change, Subscriptions() = %+v; want %+v", got, want)
	}
	deliver(`{"n":3}`, "/b")

	if err := s.SetDeclared(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unsubscription", func() bool { return strings.Count(e.logs.String(), "msg=unsubscribed") == 2 })
	if got := s.Subscriptions(); len(got) != 0 {
		t.Errorf("Subscriptions() = %+v; want none", got)
	}
}

// TestProgrammaticWinsOverDeclared: of the same pubsub and topic, the
// app's own subscription is the one delivered to, as in daprd.
func TestProgrammaticWinsOverDeclared(t *testing.T) {
	app := newHTTPApp(t, nil)
	app.setSubscribe(`[{"pubsubname":"pubsub","topic":"orders","route":"/app"}]`)
	e := newEnv(t, app.addr(), envOptions{})
	s, _ := e.run(e.config(orders(Rule{Path: "/declared"})))
	e.waitLog(`the app's subscription is in force`)
	e.publish("orders", `{"n":1}`, nil)
	if r := e.broker.next(t); r.err != nil {
		t.Fatal(r.err)
	}
	if c := <-app.got; c.Path != "/app" {
		t.Errorf("delivered to %s; want /app", c.Path)
	}
	if n := app.callCount(); n != 1 {
		t.Errorf("the app got %d deliveries; want 1", n)
	}
	want := []Subscription{{PubsubName: "pubsub", Topic: "orders", Type: Programmatic, Rules: []Rule{{Path: "/app"}}}}
	if got := s.Subscriptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("Subscriptions() = %+v", got)
	}
}
