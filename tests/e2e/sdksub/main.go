// Command sdksub is a subscriber written only with the Dapr Go SDK's
// service packages, as a Dapr app would be: service/http
// (daprd.NewService) when $APP_PROTOCOL is "http", service/grpc when it is
// "grpc". It listens on $APP_PORT and subscribes, with AddTopicEventHandler,
// on pub/sub $PUBSUB (default "pubsub"), to:
//
//   - topic "orders", route /orders: the handler answers by the event's
//     data.answer: "RETRY_ONCE" retry=true with an error the first time its
//     id comes, then success; "ERROR" retry=false with an error (the SDK
//     answers DROP); else success;
//   - topic "payments", two routing rules given out of order: match
//     `event.data.amount > 10` to /payments/medium with priority 2, then
//     `event.data.amount > 100` to /payments/big with priority 1 (the SDK
//     sorts them by priority), and /payments, the default;
//   - topic "raw", route /raw, with the subscription metadata
//     rawPayload "true".
//
// On $RECORD_PORT (HTTP) GET /deliveries answers what the handlers got:
// [{handler, id, topic, pubsubname, type, source, contentType, data
// (RawData, base64), metadata}].
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/dapr/go-sdk/service/common"
	grpcsvc "github.com/dapr/go-sdk/service/grpc"
	httpsvc "github.com/dapr/go-sdk/service/http"
)

// delivery is what a handler got.
type delivery struct {
	Handler     string            `json:"handler"`
	ID          string            `json:"id"`
	Topic       string            `json:"topic"`
	PubsubName  string            `json:"pubsubname"`
	Type        string            `json:"type"`
	Source      string            `json:"source"`
	ContentType string            `json:"contentType"`
	Data        []byte            `json:"data"`
	Metadata    map[string]string `json:"metadata"`
}

var (
	mu         sync.Mutex
	deliveries = []delivery{}
	seen       = map[string]int{}
)

func main() {
	addr := "127.0.0.1:" + os.Getenv("APP_PORT")
	var s common.Service
	switch p := os.Getenv("APP_PROTOCOL"); p {
	case "http":
		s = httpsvc.NewService(addr)
	case "grpc":
		var err error
		if s, err = grpcsvc.NewService(addr); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatalf("APP_PROTOCOL %q: want http or grpc", p)
	}
	ps := os.Getenv("PUBSUB")
	if ps == "" {
		ps = "pubsub"
	}
	for _, sub := range []struct {
		common.Subscription
		handler string
	}{
		{common.Subscription{PubsubName: ps, Topic: "orders", Route: "/orders"}, "orders"},
		{common.Subscription{PubsubName: ps, Topic: "payments", Route: "/payments/medium", Match: "event.data.amount > 10", Priority: 2}, "medium"},
		{common.Subscription{PubsubName: ps, Topic: "payments", Route: "/payments/big", Match: "event.data.amount > 100", Priority: 1}, "big"},
		{common.Subscription{PubsubName: ps, Topic: "payments", Route: "/payments"}, "payments"},
		{common.Subscription{PubsubName: ps, Topic: "raw", Route: "/raw", Metadata: map[string]string{"rawPayload": "true"}}, "raw"},
	} {
		if err := s.AddTopicEventHandler(&sub.Subscription, handle(sub.handler)); err != nil {
			log.Fatalf("AddTopicEventHandler %s: %v", sub.handler, err)
		}
	}

	rec := http.NewServeMux()
	rec.HandleFunc("GET /deliveries", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(deliveries)
	})
	lis, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("RECORD_PORT"))
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(lis, rec)) }()
	log.Fatal(s.Start())
}

// handle records an event for handler and answers as its data.answer asks.
func handle(handler string) common.TopicEventHandler {
	return func(_ context.Context, e *common.TopicEvent) (retry bool, err error) {
		mu.Lock()
		deliveries = append(deliveries, delivery{Handler: handler, ID: e.ID, Topic: e.Topic, PubsubName: e.PubsubName,
			Type: e.Type, Source: e.Source, ContentType: e.DataContentType, Data: e.RawData, Metadata: e.Metadata})
		seen[e.ID]++
		n := seen[e.ID]
		mu.Unlock()
		var d struct {
			Answer string `json:"answer"`
		}
		_ = json.Unmarshal(e.RawData, &d)
		switch {
		case d.Answer == "RETRY_ONCE" && n == 1:
			return true, errors.New("asked to retry once")
		case d.Answer == "ERROR":
			return false, errors.New("asked to fail")
		}
		return false, nil
	}
}
