package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// want is a state store the sources in force ask for.
type want struct {
	comp            *components.Component // nil: the embedded default
	source, version string
}

// desiredStores are the stores of the Components in force that apply to
// this app, and the embedded default while it is wanted and no Component
// has its name.
func (r *Reloader) desiredStores() map[string]want {
	out := map[string]want{}
	for _, key := range slices.Sorted(maps.Keys(r.inForce)) {
		p := r.inForce[key]
		for _, c := range components.Scoped(p.comps, r.src.AppID) {
			out[c.Metadata.Name] = want{comp: &c, source: key, version: p.doc.version}
		}
	}
	if _, named := out[components.DefaultStore]; r.embedded && !named {
		out[components.DefaultStore] = want{source: "embedded", version: "in-memory"}
	}
	return out
}

// build builds the store w asks for, and the hash of what it was built
// from.
func (r *Reloader) build(ctx context.Context, w want) (state.StoreConfig, string, error) {
	if w.comp == nil {
		return state.StoreConfig{Name: components.DefaultStore, Type: "state.in-memory", Store: memory.New(0)}, "embedded", nil
	}
	hash, err := r.storeHash(ctx, *w.comp)
	if err != nil {
		return state.StoreConfig{}, "", err
	}
	sc, err := components.Build(*w.comp, r.secretsFor(ctx))
	return sc, hash, err
}

// storeHash is a hash of what c's store is built from, its secrets read.
func (r *Reloader) storeHash(ctx context.Context, c components.Component) (string, error) {
	md, err := c.ResolveMetadata(r.secretsFor(ctx))
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(struct {
		Name, Type, Version string
		Metadata            map[string]string
	}{c.Metadata.Name, c.Spec.Type, c.Spec.Version, md})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// reconcileStores makes the stores in force those the sources ask for: a
// store no longer asked for is removed; a new or changed one is built,
// pinged, and put in force if it answers. retry: try again the stores that
// failed.
func (r *Reloader) reconcileStores(ctx context.Context, retry bool) {
	desired := r.desiredStores()
	for _, name := range slices.Sorted(maps.Keys(r.stores)) {
		if _, ok := desired[name]; ok {
			continue
		}
		r.tg.State.Remove(name)
		delete(r.stores, name)
		r.log.Info("state store removed: it answers ERR_STATE_STORE_NOT_FOUND from now on", "store", name)
	}
	for name := range r.storeErrs {
		if _, ok := desired[name]; !ok {
			delete(r.storeErrs, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		w := desired[name]
		hash := "embedded"
		var err error
		if w.comp != nil {
			hash, err = r.storeHash(ctx, *w.comp)
		}
		cur, ok := r.stores[name]
		if err == nil && ok && cur.hash == hash {
			r.stores[name] = storeInForce{hash: hash, source: w.source, version: w.version}
			delete(r.storeErrs, name)
			continue
		}
		prev, failed := r.storeErrs[name]
		if err == nil && failed && prev.hash == hash && prev.Version == w.version && !retry {
			continue
		}
		if err == nil {
			err = r.putStore(ctx, name, w)
		}
		if err != nil {
			rej := refusal{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
			if !failed || prev.hash != hash || prev.Version != w.version || prev.Error != rej.Error {
				if failed && prev.hash == hash && prev.Version == w.version {
					rej.Since = prev.Since // the same change, failing differently
				} else {
					r.m.reloads.WithLabelValues(kindComponent, "rejected").Inc()
				}
				what := "a new state store is not put in force"
				if ok {
					what = "the changed state store is not put in force; the one in force keeps serving"
				}
				r.log.Error(what, "store", name, "source", w.source, "version", w.version, "err", err)
			} else {
				rej.Since = prev.Since
			}
			r.storeErrs[name] = rej
			continue
		}
		delete(r.storeErrs, name)
		r.stores[name] = storeInForce{hash: hash, source: w.source, version: w.version}
		if w.comp != nil && name == components.DefaultStore {
			r.embedded = false // replaced for good
		}
		what := "state store ready: in force"
		if ok {
			what = "state store replaced: new calls go to the new one, calls in flight finish on the old"
		}
		r.log.Info(what, "store", name, "source", w.source, "version", w.version)
	}
}

// putStore builds the store w asks for, checks that it answers, and puts
// it in force.
func (r *Reloader) putStore(ctx context.Context, name string, w want) error {
	sc, _, err := r.build(ctx, w)
	if err != nil {
		return err
	}
	if err := r.tg.State.Check(sc); err != nil {
		closeStore(sc)
		return err
	}
	if p, ok := sc.Store.(state.Pinger); ok {
		pctx, cancel := context.WithTimeout(ctx, r.src.PingTimeout)
		err := p.Ping(pctx)
		cancel()
		if err != nil {
			closeStore(sc)
			return fmt.Errorf("state store %q does not answer: %w", name, err)
		}
	}
	if err := r.tg.State.Put(sc); err != nil {
		closeStore(sc)
		return err
	}
	return nil
}

func closeStore(sc state.StoreConfig) {
	if c, ok := sc.Store.(io.Closer); ok {
		_ = c.Close()
	}
}

// secretsFor reads secretKeyRefs in kubernetes mode; nil in standalone
// mode, where they are an error.
func (r *Reloader) secretsFor(ctx context.Context) components.Secrets {
	if r.secrets == nil {
		return nil
	}
	return func(ref components.SecretKeyRef) (string, error) { return r.secrets.get(ctx, ref) }
}

// secretNames are the Secrets the Components in force read, and those of
// the versions refused (one may have been for want of a Secret).
func (r *Reloader) secretNames() []string {
	seen := map[string]bool{}
	var comps []components.Component
	for _, p := range r.inForce {
		comps = append(comps, p.comps...)
	}
	for _, rej := range r.rejected {
		if rej.doc.key != "" {
			if cs, err := components.Parse(rej.doc.body, rej.doc.key); err == nil {
				comps = append(comps, cs...)
			}
		}
	}
	for _, c := range components.Scoped(comps, r.src.AppID) {
		for _, ref := range c.SecretRefs() {
			seen[ref.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
