package reload

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/components"
)

// family puts the Components of one family of types (state.*, pubsub.*,
// middleware.*) in force on its target, which is all that differs from
// one family to the next. A new or changed Component is built and must
// answer before it replaces the one in force; one that is unchanged (what
// it is built from, its secrets read, hashes the same) is not built again;
// one that fails is kept as a rejection and tried again on each retry; one
// no longer asked for is removed.
type family[B any] struct {
	target      familyTarget[B]
	words       familyWords
	secrets     *secretCache // nil in standalone mode
	log         *slog.Logger
	m           *metrics
	pingTimeout time.Duration
	bound       bool                      // start found the target
	inForce     map[string]familyBuilt[B] // by component name
	failed      map[string]componentFailure
}

// familyTarget is what a family of Component types builds, and what it
// puts what it built in force on.
type familyTarget[B any] interface {
	// bind takes the target from the sidecar's at start; false: it has
	// none (Components of the family are then an error).
	bind(tg Targets) bool
	// build builds what w asks for, without connecting anywhere.
	build(ctx context.Context, w want, secrets components.Secrets) (B, error)
	// check reports whether the target would take b (bound only).
	check(b B) error
	// ping checks that b answers, within ctx.
	ping(ctx context.Context, b B) error
	// add puts b in force at start; put puts it in force in place of the
	// one of its name, if any; remove takes the one named name out of
	// force.
	add(b B) error
	put(b B) error
	remove(name string)
	// close releases what b holds once it is not put in force.
	close(b B)
}

// familyWords name a family in its log lines.
type familyWords struct {
	noun    string // "state store"
	key     string // the log attribute naming one: "store"
	ready   string // a new one in force: "in force"
	replace string // a changed one in force: "new calls go to the new one, ..."
	removed string // what follows its removal: "it answers ERR_... from now on"
}

// familyBuilt is a Component in force, and what was built of it.
type familyBuilt[B any] struct {
	componentInForce
	typ   string
	built B
}

// want is a Component the sources in force ask for.
type want struct {
	comp            *components.Component // nil: the embedded default store
	source, version string
}

// embeddedSource is the source of what the sidecar puts in force of its
// own (the embedded default store): not a resource, not reported.
const embeddedSource = "embedded"

func newFamily[B any](t familyTarget[B], words familyWords, secrets *secretCache, log *slog.Logger, m *metrics, pingTimeout time.Duration) *family[B] {
	return &family[B]{target: t, words: words, secrets: secrets, log: log, m: m, pingTimeout: pingTimeout,
		inForce: map[string]familyBuilt[B]{}, failed: map[string]componentFailure{}}
}

// wants are the Components of cs by name.
func wants(cs []placed) map[string]want {
	out := make(map[string]want, len(cs))
	for _, p := range cs {
		out[p.comp.Metadata.Name] = want{comp: &p.comp, source: p.source, version: p.version}
	}
	return out
}

// check builds c, and checks that the target would take it (once there is
// one), without putting it in force.
func (f *family[B]) check(ctx context.Context, c components.Component) error {
	b, err := f.target.build(ctx, want{comp: &c}, f.secrets.lookup(ctx))
	if err != nil {
		return err
	}
	if f.bound {
		err = f.target.check(b)
	}
	f.target.close(b)
	return err
}

func (f *family[B]) start(ctx context.Context, tg Targets, cs []placed) error {
	return f.startWants(ctx, tg, wants(cs))
}

// startWants puts ws in force on the target as the sidecar does at start:
// not pinged (they connect on first use), and any error stops it, but that
// of a Component that sets spec.ignoreErrors.
func (f *family[B]) startWants(ctx context.Context, tg Targets, ws map[string]want) error {
	f.bound = f.target.bind(tg)
	if !f.bound {
		if len(ws) > 0 {
			return fmt.Errorf("%s components, and nothing in this sidecar to put them in force on", f.words.noun)
		}
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(ws)) {
		w := ws[name]
		hash, err := f.hash(ctx, w)
		var b B
		if err == nil {
			b, err = f.target.build(ctx, w, f.secrets.lookup(ctx))
		}
		if err == nil {
			if err = f.target.add(b); err != nil {
				f.target.close(b)
				err = fmt.Errorf("%s: %w", w.source, err)
			}
		}
		if err != nil && w.comp != nil && w.comp.Spec.IgnoreErrors {
			f.log.Error(f.words.noun+" not loaded; going on without it, as its spec.ignoreErrors asks", f.words.key, name, "file", w.comp.File, "err", err)
			f.failed[name] = f.failure(name, w, hash, err)
			continue
		}
		if err != nil {
			return err
		}
		f.inForce[name] = f.built(w, hash, b)
		if w.comp != nil {
			f.log.Info(f.words.noun+" ready", f.words.key, name, "type", w.comp.Spec.Type, "file", w.comp.File)
		}
	}
	return nil
}

func (f *family[B]) apply(ctx context.Context, cs []placed, retry bool) {
	if !f.bound || retry && len(f.failed) == 0 {
		return
	}
	f.applyWants(ctx, wants(cs), retry)
}

// applyWants makes what is in force what ws ask for: one no longer asked
// for is removed; a new or changed one is built, pinged, and put in force
// if it answers. retry: try again those that failed.
func (f *family[B]) applyWants(ctx context.Context, ws map[string]want, retry bool) {
	for _, name := range slices.Sorted(maps.Keys(f.inForce)) {
		if _, ok := ws[name]; !ok {
			f.target.remove(name)
			delete(f.inForce, name)
			f.log.Info(f.words.noun+" removed: "+f.words.removed, f.words.key, name)
		}
	}
	for name := range f.failed {
		if _, ok := ws[name]; !ok {
			delete(f.failed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ws)) {
		f.reconcile(ctx, name, ws[name], retry)
	}
}

// reconcile puts what w asks for in force under name, unless it is
// already, or it failed as it is and this is not a retry.
func (f *family[B]) reconcile(ctx context.Context, name string, w want, retry bool) {
	hash, err := f.hash(ctx, w)
	cur, ok := f.inForce[name]
	if err == nil && ok && cur.hash == hash {
		cur.source, cur.version = w.source, w.version
		f.inForce[name] = cur
		delete(f.failed, name)
		return
	}
	prev, failed := f.failed[name]
	same := failed && prev.hash == hash && prev.Version == w.version
	if err == nil && same && !retry {
		return
	}
	var b B
	if err == nil {
		b, err = f.put(ctx, name, w)
	}
	if err != nil {
		rej := f.failure(name, w, hash, err)
		switch {
		case same && prev.Error == rej.Error:
			rej.Since = prev.Since
		case same: // the same change, failing differently
			rej.Since = prev.Since
			f.logFailure(name, w, ok, err)
		default:
			f.m.reloads.WithLabelValues(kindComponent, "rejected").Inc()
			f.logFailure(name, w, ok, err)
		}
		f.failed[name] = rej
		return
	}
	delete(f.failed, name)
	f.inForce[name] = f.built(w, hash, b)
	what := f.words.noun + " ready: " + f.words.ready
	if ok {
		what = f.words.noun + " replaced: " + f.words.replace
	}
	f.log.Info(what, f.words.key, name, "source", w.source, "version", w.version)
}

// put builds what w asks for, checks that the target takes it and that it
// answers, and puts it in force.
func (f *family[B]) put(ctx context.Context, name string, w want) (B, error) {
	b, err := f.target.build(ctx, w, f.secrets.lookup(ctx))
	if err != nil {
		return b, err
	}
	if err = f.target.check(b); err == nil {
		pctx, cancel := context.WithTimeout(ctx, f.pingTimeout)
		if err = f.target.ping(pctx, b); err != nil {
			err = fmt.Errorf("%s %q does not answer: %w", f.words.noun, name, err)
		}
		cancel()
	}
	if err == nil {
		err = f.target.put(b)
	}
	if err != nil {
		f.target.close(b)
	}
	return b, err
}

func (f *family[B]) logFailure(name string, w want, replacing bool, err error) {
	what := "a new " + f.words.noun + " is not put in force"
	if replacing {
		what = "the changed " + f.words.noun + " is not put in force; the one in force keeps serving"
	}
	f.log.Error(what, f.words.key, name, "source", w.source, "version", w.version, "err", err)
}

// report lists what is in force (but what the sidecar puts in force of
// its own), and what could not be put in force.
func (f *family[B]) report(st *Status) {
	for name, in := range f.inForce {
		if in.source != embeddedSource {
			st.InUse = append(st.InUse, Resource{Kind: kindComponent, Name: name, Source: in.source, Version: in.version})
		}
	}
	for _, r := range f.failed {
		st.Rejected = append(st.Rejected, r.Rejection)
	}
}

// hash is a hash of what w is built from, its secrets read.
func (f *family[B]) hash(ctx context.Context, w want) (string, error) {
	if w.comp == nil {
		return embeddedSource, nil
	}
	return componentHash(ctx, f.secrets, *w.comp)
}

func (f *family[B]) built(w want, hash string, b B) familyBuilt[B] {
	typ := ""
	if w.comp != nil {
		typ = w.comp.Spec.Type
	}
	return familyBuilt[B]{componentInForce: componentInForce{hash: hash, source: w.source, version: w.version}, typ: typ, built: b}
}

func (f *family[B]) failure(name string, w want, hash string, err error) componentFailure {
	return componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
}
