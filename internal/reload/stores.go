package reload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// stores puts the state store Components (spec.type state.*) in force on
// the state service: a new or changed store is built and must answer
// before it replaces the one in force; one that fails is tried again on
// each retry. It also keeps the embedded default store.
type stores struct {
	svc         *state.Service // nil until start
	secrets     *secretCache   // nil in standalone mode
	log         *slog.Logger
	m           *metrics
	pingTimeout time.Duration
	// embedded: the default store is wanted. Sources.DefaultStore until
	// start, then only if no store Component applied at start; false for
	// good once a Component of its name replaces it.
	embedded bool
	inForce  map[string]componentInForce // by store name
	failed   map[string]componentFailure // by store name
}

// want is a state store the sources in force ask for.
type want struct {
	comp            *components.Component // nil: the embedded default
	source, version string
}

func newStores(secrets *secretCache, log *slog.Logger, m *metrics, pingTimeout time.Duration, defaultStore bool) *stores {
	return &stores{secrets: secrets, log: log, m: m, pingTimeout: pingTimeout, embedded: defaultStore,
		inForce: map[string]componentInForce{}, failed: map[string]componentFailure{}}
}

// check builds c's store, and checks that the state service would take
// it (once there is one), without putting it in force.
func (s *stores) check(ctx context.Context, c components.Component) error {
	sc, err := components.Build(c, s.secrets.lookup(ctx))
	if err == nil && s.svc != nil {
		err = s.svc.Check(sc)
	}
	closeStore(sc)
	return err
}

// start puts the stores of cs in force on tg.State as the sidecar does at
// start: not pinged (they connect on first use), and any error stops it,
// except a store whose Component sets spec.ignoreErrors. Without store
// Components, the embedded default is put in force when wanted.
func (s *stores) start(ctx context.Context, tg Targets, cs []placed) error {
	s.svc = tg.State
	s.embedded = s.embedded && len(cs) == 0
	desired := s.desired(cs)
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		w := desired[name]
		sc, hash, err := s.build(ctx, w)
		if err == nil {
			if err = s.svc.Add(sc); err != nil {
				closeStore(sc)
				err = fmt.Errorf("%s: %w", w.source, err)
			}
		}
		if err != nil && w.comp != nil && w.comp.Spec.IgnoreErrors {
			s.log.Error("state store not loaded; going on without it, as its spec.ignoreErrors asks", "store", name, "file", w.comp.File, "err", err)
			s.failed[name] = componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
			continue
		}
		if err != nil {
			return err
		}
		s.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
		if w.comp == nil {
			s.log.Info("no state store components: using the embedded in-memory store; its data lives only as long as this sidecar", "store", name)
		} else {
			s.log.Info("state store ready", "store", name, "type", w.comp.Spec.Type, "file", w.comp.File)
		}
	}
	return nil
}

// desired are the stores of cs, and the embedded default while it is
// wanted and no Component has its name.
func (s *stores) desired(cs []placed) map[string]want {
	out := map[string]want{}
	for _, p := range cs {
		out[p.comp.Metadata.Name] = want{comp: &p.comp, source: p.source, version: p.version}
	}
	if _, named := out[components.DefaultStore]; s.embedded && !named {
		out[components.DefaultStore] = want{source: "embedded", version: "in-memory"}
	}
	return out
}

// build builds the store w asks for, and the hash of what it was built
// from.
func (s *stores) build(ctx context.Context, w want) (state.StoreConfig, string, error) {
	if w.comp == nil {
		return state.StoreConfig{Name: components.DefaultStore, Type: "state.in-memory", Store: memory.New(0)}, "embedded", nil
	}
	hash, err := s.hash(ctx, w)
	if err != nil {
		return state.StoreConfig{}, "", err
	}
	sc, err := components.Build(*w.comp, s.secrets.lookup(ctx))
	return sc, hash, err
}

// hash is a hash of what w's store is built from, its secrets read.
func (s *stores) hash(ctx context.Context, w want) (string, error) {
	if w.comp == nil {
		return "embedded", nil
	}
	return componentHash(ctx, s.secrets, *w.comp)
}

// apply makes the stores in force those cs ask for: a store no longer
// asked for is removed; a new or changed one is built, pinged, and put in
// force if it answers. retry: try again the stores that failed.
func (s *stores) apply(ctx context.Context, cs []placed, retry bool) {
	if retry && len(s.failed) == 0 {
		return
	}
	desired := s.desired(cs)
	for _, name := range slices.Sorted(maps.Keys(s.inForce)) {
		if _, ok := desired[name]; !ok {
			s.svc.Remove(name)
			delete(s.inForce, name)
			s.log.Info("state store removed: it answers ERR_STATE_STORE_NOT_FOUND from now on", "store", name)
		}
	}
	for name := range s.failed {
		if _, ok := desired[name]; !ok {
			delete(s.failed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		s.reconcile(ctx, name, desired[name], retry)
	}
}

// reconcile puts the store w asks for in force under name, unless it is
// already, or it failed as it is and this is not a retry.
func (s *stores) reconcile(ctx context.Context, name string, w want, retry bool) {
	hash, err := s.hash(ctx, w)
	cur, ok := s.inForce[name]
	if err == nil && ok && cur.hash == hash {
		s.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
		delete(s.failed, name)
		return
	}
	prev, failed := s.failed[name]
	same := failed && prev.hash == hash && prev.Version == w.version
	if err == nil && same && !retry {
		return
	}
	if err == nil {
		err = s.put(ctx, name, w)
	}
	if err != nil {
		rej := componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
		switch {
		case same && prev.Error == rej.Error:
			rej.Since = prev.Since
		case same: // the same change, failing differently
			rej.Since = prev.Since
			s.logFailure(name, w, ok, err)
		default:
			s.m.reloads.WithLabelValues(kindComponent, "rejected").Inc()
			s.logFailure(name, w, ok, err)
		}
		s.failed[name] = rej
		return
	}
	delete(s.failed, name)
	s.inForce[name] = componentInForce{hash: hash, source: w.source, version: w.version}
	if w.comp != nil && name == components.DefaultStore {
		s.embedded = false // replaced for good
	}
	what := "state store ready: in force"
	if ok {
		what = "state store replaced: new calls go to the new one, calls in flight finish on the old"
	}
	s.log.Info(what, "store", name, "source", w.source, "version", w.version)
}

func (s *stores) logFailure(name string, w want, replacing bool, err error) {
	what := "a new state store is not put in force"
	if replacing {
		what = "the changed state store is not put in force; the one in force keeps serving"
	}
	s.log.Error(what, "store", name, "source", w.source, "version", w.version, "err", err)
}

// put builds the store w asks for, checks that it answers, and puts it in
// force.
func (s *stores) put(ctx context.Context, name string, w want) error {
	sc, _, err := s.build(ctx, w)
	if err != nil {
		return err
	}
	if err := s.svc.Check(sc); err != nil {
		closeStore(sc)
		return err
	}
	if p, ok := sc.Store.(state.Pinger); ok {
		pctx, cancel := context.WithTimeout(ctx, s.pingTimeout)
		err := p.Ping(pctx)
		cancel()
		if err != nil {
			closeStore(sc)
			return fmt.Errorf("state store %q does not answer: %w", name, err)
		}
	}
	if err := s.svc.Put(sc); err != nil {
		closeStore(sc)
		return err
	}
	return nil
}

// report lists the stores in force (the embedded default is not a
// resource), and those that could not be put in force.
func (s *stores) report(st *Status) {
	for name, in := range s.inForce {
		if in.source != "embedded" {
			st.InUse = append(st.InUse, Resource{Kind: kindComponent, Name: name, Source: in.source, Version: in.version})
		}
	}
	for _, f := range s.failed {
		st.Rejected = append(st.Rejected, f.Rejection)
	}
}

var _ componentType = (*stores)(nil)

func closeStore(sc state.StoreConfig) {
	if c, ok := sc.Store.(io.Closer); ok {
		_ = c.Close()
	}
}
