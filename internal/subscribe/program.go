package subscribe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
)

// The app's own subscriptions, as daprd reads them: an HTTP app's answer to
// GET /dapr/subscribe, a gRPC app's to ListTopicSubscriptions.
//
// An answer that is not of daprd's shape, or that holds a routing rule
// that does not compile, is refused whole, as daprd refuses it. An entry
// that daprd would not run either (no route, no pubsubname or topic) is
// left out and the others kept; so is a second entry for the same pubsub
// and topic.

// subscriptionJSON is an entry of GET /dapr/subscribe: daprd's v1 shape
// (route) and v2 shape (routes).
type subscriptionJSON struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Route           string            `json:"route"`
	Routes          routesJSON        `json:"routes"`
	DeadLetterTopic string            `json:"deadLetterTopic"`
	Metadata        map[string]string `json:"metadata"`
	BulkSubscribe   struct {
		Enabled            bool  `json:"enabled"`
		MaxMessagesCount   int32 `json:"maxMessagesCount"`
		MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs"`
	} `json:"bulkSubscribe"`
}

type routesJSON struct {
	Rules []struct {
		Match string `json:"match"`
		Path  string `json:"path"`
	} `json:"rules"`
	Default string `json:"default"`
}

// ParseHTTP reads an HTTP app's answer to GET /dapr/subscribe (its body
// when the status is 200): a JSON array of subscriptions, each
// {pubsubname, topic, route} (v1) or {pubsubname, topic, routes: {rules:
// [{match, path}], default}, deadLetterTopic, metadata} (v2). An empty
// body or null is no subscription. Routes are the rules in order, then
// routes.default, or route when there is no default (as daprd).
//
// err refuses the whole answer; skipped are the entries left out, each
// naming its entry and why.
func ParseHTTP(body []byte) (subs []Subscription, skipped []error, err error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, nil
	}
	var entries []json.RawMessage
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&entries); err != nil {
		return nil, nil, fmt.Errorf("the answer is not a JSON array of subscriptions ({\"pubsubname\", \"topic\", \"route\"} or with \"routes\"): %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("the answer has more after its JSON array")
	}
	in := make([]Subscription, 0, len(entries))
	for i, raw := range entries {
		var e subscriptionJSON
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, nil, fmt.Errorf("entry %d: %w", i, jsonError(err))
		}
		s := Subscription{
			PubsubName:      e.PubsubName,
			Topic:           e.Topic,
			DeadLetterTopic: e.DeadLetterTopic,
			Metadata:        e.Metadata,
			BulkSubscribe:   BulkSubscribe(e.BulkSubscribe),
			Type:            Programmatic,
		}
		for _, r := range e.Routes.Rules {
			s.Rules = append(s.Rules, Rule{Match: r.Match, Path: r.Path})
		}
		switch {
		case e.Routes.Default != "":
			s.Rules = append(s.Rules, Rule{Path: e.Routes.Default})
		case e.Route != "":
			s.Rules = append(s.Rules, Rule{Path: e.Route})
		}
		in = append(in, s)
	}
	return sift(in)
}

// ParseGRPC reads a gRPC app's answer to ListTopicSubscriptions, as
// ParseHTTP reads an HTTP app's. A subscription without routes has one
// route, "" (a gRPC app's OnTopicEvent gets the path, and need not use it).
func ParseGRPC(resp *runtimev1pb.ListTopicSubscriptionsResponse) (subs []Subscription, skipped []error, err error) {
	in := make([]Subscription, 0, len(resp.GetSubscriptions()))
	for _, t := range resp.GetSubscriptions() {
		s := Subscription{
			PubsubName:      t.GetPubsubName(),
			Topic:           t.GetTopic(),
			DeadLetterTopic: t.GetDeadLetterTopic(),
			Metadata:        t.GetMetadata(),
			Type:            Programmatic,
		}
		if bs := t.GetBulkSubscribe(); bs != nil {
			s.BulkSubscribe = BulkSubscribe{Enabled: bs.GetEnabled(), MaxMessagesCount: bs.GetMaxMessagesCount(), MaxAwaitDurationMs: bs.GetMaxAwaitDurationMs()}
		}
		for _, r := range t.GetRoutes().GetRules() {
			s.Rules = append(s.Rules, Rule{Match: r.GetMatch(), Path: r.GetPath()})
		}
		if d := t.GetRoutes().GetDefault(); d != "" || len(s.Rules) == 0 {
			s.Rules = append(s.Rules, Rule{Path: d})
		}
		in = append(in, s)
	}
	return sift(in)
}

// sift checks the entries: a rule that does not compile refuses them all;
// an entry that cannot run is left out.
func sift(in []Subscription) (subs []Subscription, skipped []error, err error) {
	seen := map[[2]string]int{}
	for i, s := range in {
		if _, err := CompileRoutes(s.Rules); err != nil {
			return nil, nil, fmt.Errorf("entry %d (%s): %w", i, s, err)
		}
		if err := s.Check(); err != nil {
			skipped = append(skipped, fmt.Errorf("entry %d is left out: %w", i, err))
			continue
		}
		key := [2]string{s.PubsubName, s.Topic}
		if j, dup := seen[key]; dup {
			skipped = append(skipped, fmt.Errorf("entry %d is left out: entry %d is a %s already", i, j, s))
			continue
		}
		seen[key] = i
		subs = append(subs, s)
	}
	return subs, skipped, nil
}

// jsonError says which field of an entry has the wrong type.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: a JSON %s where %s is wanted", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
	}
	return err
}

func jsonKind(goKind string) string {
	switch {
	case goKind == "string":
		return "a string"
	case goKind == "map", goKind == "struct":
		return "an object"
	case goKind == "slice":
		return "an array"
	case goKind == "bool":
		return "a boolean"
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "float"):
		return "a number"
	}
	return goKind
}
