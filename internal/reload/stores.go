package reload

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// stores puts the state store Components (spec.type state.*) in force on
// the state service, a family like the others, and keeps the embedded
// default store while no Component takes its place.
type stores struct {
	*family[state.StoreConfig]
	// embedded: the default store is wanted. Sources.DefaultStore until
	// start, then only if no store Component applied at start; false for
	// good once a Component of its name replaces it.
	embedded bool
}

func newStores(secrets *secretCache, log *slog.Logger, m *metrics, pingTimeout time.Duration, defaultStore bool) *stores {
	words := familyWords{noun: "state store", key: "store", ready: "in force",
		replace: "new calls go to the new one, calls in flight finish on the old",
		removed: "it answers ERR_STATE_STORE_NOT_FOUND from now on"}
	return &stores{family: newFamily(&storeTarget{}, words, secrets, log, m, pingTimeout), embedded: defaultStore}
}

// start puts the stores of cs in force; without store Components, the
// embedded default when wanted.
func (s *stores) start(ctx context.Context, tg Targets, cs []placed) error {
	s.embedded = s.embedded && len(cs) == 0
	if err := s.startWants(ctx, tg, s.desired(cs)); err != nil {
		return err
	}
	if in, ok := s.inForce[components.DefaultStore]; ok && in.source == embeddedSource {
		s.log.Info("no state store components: using the embedded in-memory store; its data lives only as long as this sidecar", "store", components.DefaultStore)
	}
	return nil
}

func (s *stores) apply(ctx context.Context, cs []placed, retry bool) {
	if !s.bound || retry && len(s.failed) == 0 {
		return
	}
	s.applyWants(ctx, s.desired(cs), retry)
	if in, ok := s.inForce[components.DefaultStore]; ok && in.source != embeddedSource {
		s.embedded = false // replaced for good
	}
}

// desired are the stores of cs, and the embedded default while it is
// wanted and no Component has its name.
func (s *stores) desired(cs []placed) map[string]want {
	out := wants(cs)
	if _, named := out[components.DefaultStore]; s.embedded && !named {
		out[components.DefaultStore] = want{source: embeddedSource, version: "in-memory"}
	}
	return out
}

var _ componentType = (*stores)(nil)

// storeTarget is the state service.
type storeTarget struct{ svc *state.Service }

func (t *storeTarget) bind(tg Targets) bool {
	t.svc = tg.State
	return t.svc != nil
}

func (t *storeTarget) build(_ context.Context, w want, secrets components.Secrets) (state.StoreConfig, error) {
	if w.comp == nil {
		return state.StoreConfig{Name: components.DefaultStore, Type: "state.in-memory", Store: memory.New(0)}, nil
	}
	return components.Build(*w.comp, secrets)
}

func (t *storeTarget) check(sc state.StoreConfig) error { return t.svc.Check(sc) }

func (t *storeTarget) ping(ctx context.Context, sc state.StoreConfig) error {
	if p, ok := sc.Store.(state.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (t *storeTarget) add(sc state.StoreConfig) error { return t.svc.Add(sc) }
func (t *storeTarget) put(sc state.StoreConfig) error { return t.svc.Put(sc) }
func (t *storeTarget) remove(name string)             { t.svc.Remove(name) }

func (t *storeTarget) close(sc state.StoreConfig) {
	if c, ok := sc.Store.(io.Closer); ok {
		_ = c.Close()
	}
}
