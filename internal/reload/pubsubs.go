package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/pkg/pubsub"
)

// pubsubs puts the pub/sub Components (spec.type pubsub.*) in force on the
// pub/sub service: a new or changed broker is built and must answer
// (pubsub.Pinger) before it replaces the one in force, whose publishes and
// deliveries in flight finish on it; one that fails is tried again on each
// retry. A removed one answers ERR_PUBSUB_NOT_FOUND from then on.
type pubsubs struct {
	svc         *pubsub.Service // nil until start
	secrets     *secretCache    // nil in standalone mode
	log         *slog.Logger
	m           *metrics
	pingTimeout time.Duration
	env         components.Env
	inForce     map[string]componentInForce // by component name
	failed      map[string]componentFailure // by component name
}

func newPubSubs(secrets *secretCache, log *slog.Logger, m *metrics, pingTimeout time.Duration, env components.Env) *pubsubs {
	return &pubsubs{secrets: secrets, log: log, m: m, pingTimeout: pingTimeout, env: env,
		inForce: map[string]componentInForce{}, failed: map[string]componentFailure{}}
}

// check builds c's broker, without putting it in force.
func (p *pubsubs) check(ctx context.Context, c components.Component) error {
	bc, err := components.BuildPubSub(c, p.secrets.lookup(ctx), p.env)
	closeBroker(bc)
	return err
}

// start puts the brokers of cs in force on tg.PubSub as the sidecar does at
// start: not pinged (they connect on first use), and any error stops it,
// except a broker whose Component sets spec.ignoreErrors.
func (p *pubsubs) start(ctx context.Context, tg Targets, cs []placed) error {
	p.svc = tg.PubSub
	if p.svc == nil && len(cs) > 0 {
		return errors.New("pub/sub components, and no pub/sub service to put them in force on")
	}
	desired := desiredPubSubs(cs)
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		w := desired[name]
		hash, err := componentHash(ctx, p.secrets, w.comp)
		var bc pubsub.BrokerConfig
		if err == nil {
			bc, err = components.BuildPubSub(w.comp, p.secrets.lookup(ctx), p.env)
		}
		if err == nil {
			if err = p.svc.Add(bc); err != nil {
				closeBroker(bc)
				err = fmt.Errorf("%s: %w", w.source, err)
			}
		}
		if err != nil && w.comp.Spec.IgnoreErrors {
			p.log.Error("pub/sub component not loaded; going on without it, as its spec.ignoreErrors asks", "pubsub", name, "file", w.comp.File, "err", err)
			p.failed[name] = componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
			continue
		}
		if err != nil {
			return err
		}
		p.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
		p.log.Info("pub/sub ready", "pubsub", name, "type", w.comp.Spec.Type, "file", w.comp.File)
	}
	return nil
}

// desiredPubSubs are the Components of cs by name.
func desiredPubSubs(cs []placed) map[string]placed {
	out := make(map[string]placed, len(cs))
	for _, c := range cs {
		out[c.comp.Metadata.Name] = c
	}
	return out
}

// apply makes the brokers in force those cs ask for: one no longer asked
// for is removed; a new or changed one is built, pinged, and put in force
// if it answers. retry: try again the brokers that failed.
func (p *pubsubs) apply(ctx context.Context, cs []placed, retry bool) {
	if p.svc == nil || retry && len(p.failed) == 0 {
		return
	}
	desired := desiredPubSubs(cs)
	for _, name := range slices.Sorted(maps.Keys(p.inForce)) {
		if _, ok := desired[name]; !ok {
			p.svc.Remove(name)
			delete(p.inForce, name)
			p.log.Info("pub/sub removed: publishing to it answers ERR_PUBSUB_NOT_FOUND from now on", "pubsub", name)
		}
	}
	for name := range p.failed {
		if _, ok := desired[name]; !ok {
			delete(p.failed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		p.reconcile(ctx, name, desired[name], retry)
	}
}

// reconcile puts the broker w asks for in force under name, unless it is
// already, or it failed as it is and this is not a retry.
func (p *pubsubs) reconcile(ctx context.Context, name string, w placed, retry bool) {
	hash, err := componentHash(ctx, p.secrets, w.comp)
	cur, ok := p.inForce[name]
	if err == nil && ok && cur.hash == hash {
		p.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
		delete(p.failed, name)
		return
	}
	prev, failed := p.failed[name]
	same := failed && prev.hash == hash && prev.Version == w.version
	if err == nil && same && !retry {
		return
	}
	if err == nil {
		err = p.put(ctx, name, w.comp)
	}
	if err != nil {
		rej := componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
		switch {
		case same && prev.Error == rej.Error:
			rej.Since = prev.Since
		case same: // the same change, failing differently
			rej.Since = prev.Since
			p.logFailure(name, w, ok, err)
		default:
			p.m.reloads.WithLabelValues(kindComponent, "rejected").Inc()
			p.logFailure(name, w, ok, err)
		}
		p.failed[name] = rej
		return
	}
	delete(p.failed, name)
	p.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
	what := "pub/sub ready: in force"
	if ok {
		what = "pub/sub replaced: new publishes go to the new one, those in flight finish on the old"
	}
	p.log.Info(what, "pubsub", name, "source", w.source, "version", w.version)
}

func (p *pubsubs) logFailure(name string, w placed, replacing bool, err error) {
	what := "a new pub/sub is not put in force"
	if replacing {
		what = "the changed pub/sub is not put in force; the one in force keeps serving"
	}
	p.log.Error(what, "pubsub", name, "source", w.source, "version", w.version, "err", err)
}

// put builds c's broker, checks that it answers, and puts it in force.
func (p *pubsubs) put(ctx context.Context, name string, c components.Component) error {
	bc, err := components.BuildPubSub(c, p.secrets.lookup(ctx), p.env)
	if err != nil {
		return err
	}
	if pg, ok := bc.Broker.(pubsub.Pinger); ok {
		pctx, cancel := context.WithTimeout(ctx, p.pingTimeout)
		err := pg.Ping(pctx)
		cancel()
		if err != nil {
			closeBroker(bc)
			return fmt.Errorf("pub/sub %q does not answer: %w", name, err)
		}
	}
	if err := p.svc.Put(bc); err != nil {
		closeBroker(bc)
		return err
	}
	return nil
}

// report lists the brokers in force, and those that could not be put in
// force.
func (p *pubsubs) report(st *Status) {
	for name, in := range p.inForce {
		st.InUse = append(st.InUse, Resource{Kind: kindComponent, Name: name, Source: in.source, Version: in.version})
	}
	for _, f := range p.failed {
		st.Rejected = append(st.Rejected, f.Rejection)
	}
}

var _ componentType = (*pubsubs)(nil)

func closeBroker(bc pubsub.BrokerConfig) {
	if c, ok := bc.Broker.(io.Closer); ok {
		_ = c.Close()
	}
}
