package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// Middleware sees every publish as the broker gets it, with whether its
// topic is declared (subscribed to, or named by allowedTopics or
// protectedTopics), runs the access check inside its next, and may try
// again; the caller gets the error it returns, wrapped with the names.
func TestMiddlewareSeesEveryPublish(t *testing.T) {
	svc := NewService()
	b := newFake()
	access := Access{AppID: "app", Protected: []string{"payments"}, Publishing: []string{"orders", "payments", "audit"}}
	if err := svc.Add(BrokerConfig{Name: "ps", Type: "pubsub.fake", Broker: b, Access: access}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	tries := 1
	svc.Use(nil, func(ctx context.Context, c *Call, next func(context.Context) error) error {
		var err error
		for i := 0; i < tries; i++ {
			err = next(ctx)
		}
		outcome := "ok"
		if err != nil {
			outcome = err.Error()
		}
		seen = append(seen, fmt.Sprintf("%s %s %s declared=%v: %s", c.Broker.Name, c.Message.Topic, c.Message.Data, c.Declared, outcome))
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := svc.Subscribe(ctx, "ps", Subscription{Topic: "orders"}, func(context.Context, *Delivery) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"orders", "payments", "audit", "random"} {
		if err := svc.Publish(context.Background(), "ps", &Message{Topic: topic, Data: []byte("x")}); err != nil && topic != "random" {
			t.Fatalf("publish to %s: %v", topic, err)
		}
	}
	cancel() // the subscription ends: orders is no longer declared
	for svc.declared((*svc.brokers.Load())["ps"], "orders") {
		runtime.Gosched() // context.AfterFunc runs at once, in its own goroutine
	}
	_ = svc.Publish(context.Background(), "ps", &Message{Topic: "orders", Data: []byte("y")})
	tries = 2
	_ = svc.Publish(context.Background(), "ps", &Message{Topic: "audit", Data: []byte("z")})
	want := []string{
		"ps orders x declared=true: ok",
		"ps payments x declared=true: ok",
		"ps audit x declared=false: ok",
		`ps random x declared=false: topic "random" is not allowed for app id "app": the component's publishingScopes limit this app to other topics: topic not allowed`,
		"ps orders y declared=false: ok",
		"ps audit z declared=false: ok",
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("middleware saw\n%q\nwant\n%q", seen, want)
	}
	err := svc.Publish(context.Background(), "ps", &Message{Topic: "random"})
	if !errors.Is(err, ErrForbidden) || err.Error() != `pubsub "ps": `+want[3][len("ps random x declared=false: "):] {
		t.Errorf("a refused publish: %v", err)
	}
	tries = 0 // a middleware that answers itself
	svc.mw[0] = func(context.Context, *Call, func(context.Context) error) error { return errors.New("circuit open") }
	if err := svc.Publish(context.Background(), "ps", &Message{Topic: "orders"}); err == nil || err.Error() != `pubsub "ps": publish to topic "orders": circuit open` {
		t.Errorf("the middleware's own error: %v", err)
	}
}
