package pubsub

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Topic access as daprd 1.14 decides it (its scopes and IsOperationAllowed
// tests), for app "app1".
func TestAccess(t *testing.T) {
	for _, c := range []struct {
		name    string
		md      map[string]string
		topic   string
		publish bool   // app1 may publish to topic
		says    string // in the refusal
	}{
		{"no fields", nil, "orders", true, ""},
		{"allowed", map[string]string{"allowedTopics": "orders, audit"}, "audit", true, ""},
		{"not allowed", map[string]string{"allowedTopics": "orders,audit"}, "payments", false, "allowedTopics"},
		{"allowed, in any case of the name", map[string]string{"ALLOWEDTOPICS": "orders"}, "payments", false, "allowedTopics"},
		{"scoped", map[string]string{"publishingScopes": "app1=orders,audit;app2=payments"}, "orders", true, ""},
		{"scoped to others", map[string]string{"publishingScopes": "app1=orders;app2=payments"}, "payments", false, "publishingScopes"},
		{"scoped to none", map[string]string{"publishingScopes": "app1=;app2=payments"}, "orders", false, "publishingScopes"},
		{"not listed", map[string]string{"publishingScopes": "app2=payments"}, "orders", true, ""},
		{"two entries", map[string]string{"publishingScopes": "app1=a;app1=orders"}, "orders", true, ""},
		{"entry without =", map[string]string{"publishingScopes": "app1"}, "orders", true, ""},
		{"protected", map[string]string{"protectedTopics": "orders"}, "orders", false, "protectedTopics"},
		{"protected and scoped", map[string]string{"protectedTopics": "orders", "publishingScopes": "app1=orders"}, "orders", true, ""},
		{"protected, other topic", map[string]string{"protectedTopics": "orders"}, "audit", true, ""},
		{"allowed but scoped away", map[string]string{"allowedTopics": "orders,audit", "publishingScopes": "app1=audit"}, "orders", false, "publishingScopes"},
		{"subscription scopes do not limit publishing", map[string]string{"subscriptionScopes": "app1="}, "orders", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ParseAccess(c.md, "app1").Publish(c.topic)
			if c.publish {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), `"app1"`) {
				t.Errorf("error %v; want ErrForbidden naming %s and the app", err, c.says)
			}
		})
	}
	a := ParseAccess(map[string]string{"subscriptionScopes": "app1=orders", "publishingScopes": "app1="}, "app1")
	if err := a.Subscribe("orders"); err != nil {
		t.Errorf("subscribe to a scoped topic: %v", err)
	}
	if err := a.Subscribe("audit"); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "subscriptionScopes") {
		t.Errorf("subscribe out of scope: %v", err)
	}
}

// The Service refuses a publish its broker's Access does not allow, before
// the broker sees it.
func TestServicePublishChecksAccess(t *testing.T) {
	s := NewService()
	b := newFake()
	if err := s.Add(BrokerConfig{Name: "ps", Broker: b, Access: ParseAccess(map[string]string{"allowedTopics": "orders"}, "app1")}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b.entered = make(chan struct{})
	err := s.Publish(context.Background(), "ps", &Message{Topic: "audit", Data: []byte("x")})
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `pubsub "ps"`) {
		t.Errorf("publish to a topic not allowed: %v", err)
	}
	select {
	case <-b.entered:
		t.Error("the broker saw a refused publish")
	default:
	}
	b.entered = nil
	if err := s.Publish(context.Background(), "ps", &Message{Topic: "orders", Data: []byte("x")}); err != nil {
		t.Errorf("publish to an allowed topic: %v", err)
	}
}
