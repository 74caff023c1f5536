package reload

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// pubsubs puts the pub/sub Components (spec.type pubsub.*) in force on the
// pub/sub service: a changed broker replaces the one in force once it
// answers (pubsub.Pinger), and the publishes and deliveries in flight on
// the old one finish on it. A removed one answers ERR_PUBSUB_NOT_FOUND
// from then on.
type pubsubs struct {
	*family[pubsub.BrokerConfig]
}

func newPubSubs(secrets *secretCache, log *slog.Logger, m *metrics, pingTimeout time.Duration, env components.Env) *pubsubs {
	words := familyWords{noun: "pub/sub", key: "pubsub", ready: "in force",
		replace: "new publishes go to the new one, those in flight finish on the old",
		removed: "publishing to it answers ERR_PUBSUB_NOT_FOUND from now on"}
	return &pubsubs{newFamily(&brokerTarget{env: env}, words, secrets, log, m, pingTimeout)}
}

var _ componentType = (*pubsubs)(nil)

// brokerTarget is the pub/sub service.
type brokerTarget struct {
	env components.Env
	svc *pubsub.Service
}

func (t *brokerTarget) bind(tg Targets) bool {
	t.svc = tg.PubSub
	return t.svc != nil
}

func (t *brokerTarget) build(_ context.Context, w want, secrets components.Secrets) (pubsub.BrokerConfig, error) {
	return components.BuildPubSub(*w.comp, secrets, t.env)
}

func (t *brokerTarget) check(pubsub.BrokerConfig) error { return nil }

func (t *brokerTarget) ping(ctx context.Context, bc pubsub.BrokerConfig) error {
	if p, ok := bc.Broker.(pubsub.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (t *brokerTarget) add(bc pubsub.BrokerConfig) error { return t.svc.Add(bc) }
func (t *brokerTarget) put(bc pubsub.BrokerConfig) error { return t.svc.Put(bc) }
func (t *brokerTarget) remove(name string)               { t.svc.Remove(name) }

func (t *brokerTarget) close(bc pubsub.BrokerConfig) {
	if c, ok := bc.Broker.(io.Closer); ok {
		_ = c.Close()
	}
}
