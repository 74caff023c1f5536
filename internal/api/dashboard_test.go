package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDashboardViewHoldsNoAppValue(t *testing.T) {
	m := Metadata{
		ID: "orders", RuntimeVersion: "0.1.0", Mode: "kubernetes", Namespace: "shop", PID: 7,
		Components: []Component{{Name: "statestore", Type: "state.redis", Version: "v1", Capabilities: []string{"ETAG"}}},
		Extended: map[string]string{
			"appSecret": "s3cr3t-from-the-app", "daprRuntimeVersion": "0.1.0",
			MTLSSpiffeIDKey: "spiffe://public/ns/shop/orders", MTLSCertExpiryKey: "2026-12-08T00:00:00Z",
		},
		Subscriptions: []Subscription{{PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "dead", Type: "DECLARATIVE",
			Metadata: map[string]string{"rawPayload": "sub-value"}, Rules: []SubscriptionRule{{Match: `event.type == "rule-value"`, Path: "/x"}}}},
		AppConnectionProperties: AppConnection{Port: 8080, Protocol: "http", ChannelAddress: "127.0.0.1"},
		Ports:                   Ports{HTTP: 3500, Metrics: 9090},
	}
	b, err := json.Marshal(m.Dashboard(true))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, bad := range []string{"s3cr3t-from-the-app", "appSecret", "sub-value", "rule-value", "daprRuntimeVersion"} {
		if strings.Contains(got, bad) {
			t.Errorf("the view holds %q: %s", bad, got)
		}
	}
	for _, want := range []string{`"id":"orders"`, `"appReady":true`, `"namespace":"shop"`, `"mtlsSpiffeID":"spiffe://public/ns/shop/orders"`,
		`"mtlsCertExpiry":"2026-12-08T00:00:00Z"`, `{"name":"statestore","type":"state.redis","version":"v1"}`,
		`"pubsubname":"pubsub","topic":"orders","deadLetterTopic":"dead","type":"DECLARATIVE"`,
		`"appConnectionProperties":{"port":8080,"protocol":"http"}`, `"metrics":9090`} {
		if !strings.Contains(got, want) {
			t.Errorf("the view lacks %s: %s", want, got)
		}
	}
	// Nothing to show is an empty list, not null.
	b, _ = json.Marshal(Metadata{ID: "x"}.Dashboard(false))
	if !strings.Contains(string(b), `"components":[],"subscriptions":[]`) || !strings.Contains(string(b), `"extended":{}`) {
		t.Errorf("empty view: %s", b)
	}
}
