package reload

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/tandem-run/tandem/internal/subscribe"
)

// Declarer takes the declared subscriptions in force: *subscribe.Subscriber.
type Declarer interface {
	SetDeclared([]subscribe.Subscription) error
}

// subscriptionKind keeps the Subscription resources in force, and those
// that apply to this app on the subscriber: it starts and stops the
// subscriptions that changed.
type subscriptionKind struct {
	parts parts[subscribe.Declared]
	appID string
	log   *slog.Logger
	sub   Declarer                 // nil: no app, nothing to deliver to
	set   []subscribe.Subscription // on sub
}

func newSubscriptionKind(appID string, log *slog.Logger) *subscriptionKind {
	return &subscriptionKind{appID: appID, log: log}
}

func (k *subscriptionKind) kind() string { return kindSubscription }

// stage parses d's Subscription resources and checks that, in place of its
// source's version, no two of those that apply to this app are of the same
// pubsub and topic.
func (k *subscriptionKind) stage(_ context.Context, d doc) (int, error) {
	res, err := subscribe.ParseResources(d.body, d.key)
	if err != nil {
		return 0, err
	}
	if err := k.unique(append(k.parts.items(d.key), res...), d.key); err != nil {
		return 0, err
	}
	k.parts.stage(d, res)
	return len(res), nil
}

// unique refuses two subscriptions of the app to the same pubsub and
// topic, naming the first of res that clashes.
func (k *subscriptionKind) unique(res []subscribe.Declared, source string) error {
	seen := map[[2]string]string{}
	for _, r := range res {
		if !r.AppliesTo(k.appID) {
			continue
		}
		key := [2]string{r.PubsubName, r.Topic}
		if other, dup := seen[key]; dup {
			return fmt.Errorf("%s: subscriptions %q and %q are both a %s; keep one", source, other, r.Name, r.Subscription)
		}
		seen[key] = r.Name
	}
	return nil
}

func (k *subscriptionKind) commit(key string) error { k.parts.commit(key); return nil }
func (k *subscriptionKind) drop(key string)         { k.parts.drop(key) }
func (k *subscriptionKind) remove(key string)       { k.parts.remove(key) }

func (k *subscriptionKind) start(_ context.Context, tg Targets) error {
	k.sub = tg.Subscriptions
	if k.sub == nil {
		if n := len(k.declared()); n > 0 {
			k.log.Warn("Subscription resources without effect: there is no app to deliver to (no --app-port)", "subscriptions", n)
		}
		return nil
	}
	k.set = k.declared()
	return k.sub.SetDeclared(k.set)
}

// apply puts the subscriptions in force on the subscriber, if they
// changed. Each was checked as it was staged: nothing is left to fail.
func (k *subscriptionKind) apply(_ context.Context, retry bool) {
	if retry || k.sub == nil {
		return
	}
	set := k.declared()
	if reflect.DeepEqual(set, k.set) {
		return
	}
	if err := k.sub.SetDeclared(set); err != nil { // checked at stage: not expected
		k.log.Error("declared subscriptions not changed", "err", err)
		return
	}
	k.set = set
	k.log.Info("declared subscriptions in force", "subscriptions", len(set))
}

// declared is the subscriptions in force that apply to this app.
func (k *subscriptionKind) declared() []subscribe.Subscription {
	var out []subscribe.Subscription
	for _, d := range k.parts.items("") {
		if d.AppliesTo(k.appID) {
			out = append(out, d.Subscription)
		}
	}
	return out
}

// report lists the resources in force that apply to this app.
func (k *subscriptionKind) report(st *Status) {
	for _, p := range k.parts.all() {
		for _, d := range p.items {
			if d.AppliesTo(k.appID) {
				st.InUse = append(st.InUse, Resource{Kind: kindSubscription, Name: d.Name, Source: p.source, Version: p.version})
			}
		}
	}
}

var (
	_ reconciler = (*subscriptionKind)(nil)
	_ Declarer   = (*subscribe.Subscriber)(nil)
)
