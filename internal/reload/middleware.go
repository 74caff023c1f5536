package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/middleware"
)

// middlewares puts the middleware Components (spec.type middleware.*) in
// force, and the pipelines of the Configuration in force, built of them,
// on the middleware switch. A Component is built again only when what it
// is built from changed, so a rate limit's counts outlive the changes of
// other resources. A pipeline that names a Component that is not in force
// (removed, or one that failed to build) is not put in force: the
// pipelines in force stay, as Status and the log say, until the
// Configuration or the Components fit again.
type middlewares struct {
	sw      *middleware.Switch // nil until start
	secrets *secretCache       // nil in standalone mode
	log     *slog.Logger
	m       *metrics
	conf    func() *config.Configuration // the Configuration in force
	inForce map[string]builtMiddleware   // by component name
	failed  map[string]componentFailure  // by component name
	// refused is why the pipelines of the Configuration in force could
	// not be built; nil: they are in force.
	refused *Rejection
}

// builtMiddleware is a middleware Component in force, and what was built
// of it.
type builtMiddleware struct {
	componentInForce
	typ string
	mw  middleware.Middleware
}

func newMiddlewares(secrets *secretCache, log *slog.Logger, m *metrics) *middlewares {
	return &middlewares{secrets: secrets, log: log, m: m,
		inForce: map[string]builtMiddleware{}, failed: map[string]componentFailure{}}
}

// check builds c's middleware, without putting it in force.
func (p *middlewares) check(ctx context.Context, c components.Component) error {
	_, err := components.BuildMiddleware(c, p.secrets.lookup(ctx))
	return err
}

// start builds the middleware of cs and puts the pipelines of the
// Configuration in force on tg.Middleware: any error stops the sidecar,
// a pipeline naming a Component that is not in force among them.
func (p *middlewares) start(ctx context.Context, tg Targets, cs []placed) error {
	p.sw = tg.Middleware
	if p.sw == nil {
		if len(cs) > 0 {
			return errors.New("middleware components, and no middleware pipeline to put them in force on")
		}
		return nil
	}
	for _, w := range cs {
		name := w.comp.Metadata.Name
		hash, err := componentHash(ctx, p.secrets, w.comp)
		var mw middleware.Middleware
		if err == nil {
			mw, err = components.BuildMiddleware(w.comp, p.secrets.lookup(ctx))
		}
		if err != nil && w.comp.Spec.IgnoreErrors {
			p.log.Error("middleware component not loaded; going on without it, as its spec.ignoreErrors asks", "middleware", name, "file", w.comp.File, "err", err)
			p.failed[name] = componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
			continue
		}
		if err != nil {
			return err
		}
		p.inForce[name] = builtMiddleware{componentInForce: componentInForce{hash: hash, source: w.source, version: w.version}, typ: w.comp.Spec.Type, mw: mw}
		p.log.Info("middleware ready", "middleware", name, "type", w.comp.Spec.Type, "file", w.comp.File)
	}
	api, app, err := p.pipelines(p.conf())
	if err != nil {
		return err
	}
	p.sw.Set(api, app)
	p.sw.SetComponents(p.components())
	return nil
}

// components are the middleware in force, by name.
func (p *middlewares) components() []middleware.Component {
	out := make([]middleware.Component, 0, len(p.inForce))
	for _, name := range slices.Sorted(maps.Keys(p.inForce)) {
		out = append(out, middleware.Component{Name: name, Type: p.inForce[name].typ})
	}
	return out
}

// apply makes the middleware in force those cs ask for, then puts the
// pipelines in force again. retry: try again those that failed.
func (p *middlewares) apply(ctx context.Context, cs []placed, retry bool) {
	if p.sw == nil || retry && len(p.failed) == 0 && p.refused == nil {
		return
	}
	desired := desiredPubSubs(cs)
	for _, name := range slices.Sorted(maps.Keys(p.inForce)) {
		if _, ok := desired[name]; !ok {
			delete(p.inForce, name)
			p.log.Info("middleware removed", "middleware", name)
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
	p.sw.SetComponents(p.components())
	p.setPipelines()
}

// reconcile builds the middleware w asks for under name, unless it is
// built already, or it failed as it is and this is not a retry.
func (p *middlewares) reconcile(ctx context.Context, name string, w placed, retry bool) {
	hash, err := componentHash(ctx, p.secrets, w.comp)
	cur, ok := p.inForce[name]
	if err == nil && ok && cur.hash == hash {
		cur.source, cur.version = w.source, w.version
		p.inForce[name] = cur
		delete(p.failed, name)
		return
	}
	prev, failed := p.failed[name]
	same := failed && prev.hash == hash && prev.Version == w.version
	if err == nil && same && !retry {
		return
	}
	var mw middleware.Middleware
	if err == nil {
		mw, err = components.BuildMiddleware(w.comp, p.secrets.lookup(ctx))
	}
	if err != nil {
		rej := componentFailure{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
		if same {
			rej.Since = prev.Since
		} else {
			p.m.reloads.WithLabelValues(kindComponent, "rejected").Inc()
			p.log.Error("the middleware is not put in force; the one in force, if any, keeps serving", "middleware", name, "source", w.source, "version", w.version, "err", err)
		}
		p.failed[name] = rej
		return
	}
	delete(p.failed, name)
	p.inForce[name] = builtMiddleware{componentInForce: componentInForce{hash: hash, source: w.source, version: w.version}, typ: w.comp.Spec.Type, mw: mw}
	p.log.Info("middleware built: in force for the calls that start from now on", "middleware", name, "type", w.comp.Spec.Type, "source", w.source, "version", w.version)
}

// setPipelines puts the pipelines of the Configuration in force, built of
// the middleware in force; if they cannot be built, those in force stay.
func (p *middlewares) setPipelines() {
	if p.sw == nil {
		return
	}
	c := p.conf()
	api, app, err := p.pipelines(c)
	if err != nil {
		if p.refused == nil || p.refused.Error != err.Error() {
			p.log.Error("the pipelines of the Configuration are not put in force; those in force keep serving", "err", err)
			p.refused = &Rejection{Kind: kindConfiguration, Name: c.Metadata.Name, Source: c.Source, Error: err.Error(), Since: time.Now()}
		}
		return
	}
	if p.refused != nil {
		p.log.Info("the pipelines of the Configuration are in force again")
	}
	p.refused = nil
	p.sw.Set(api, app)
}

// pipelines builds the pipelines of c of the middleware in force.
func (p *middlewares) pipelines(c *config.Configuration) (api, app middleware.Pipeline, err error) {
	build := func(w middleware.Which) (middleware.Pipeline, error) {
		var out middleware.Pipeline
		for i, h := range c.PipelineHandlers(string(w)) {
			b, ok := p.inForce[h.Name]
			if !ok {
				return nil, fmt.Errorf("configuration %q: spec.%s.handlers[%d].name: no middleware Component %q is in force (%s)",
					c.Metadata.Name, w, i, h.Name, p.missing(h.Name))
			}
			if b.typ != h.Type {
				return nil, fmt.Errorf("configuration %q: spec.%s.handlers[%d].type %q: Component %q is of type %q",
					c.Metadata.Name, w, i, h.Type, h.Name, b.typ)
			}
			out = append(out, middleware.Handler{Name: h.Name, Type: h.Type, Middleware: b.mw})
		}
		return out, nil
	}
	if api, err = build(middleware.API); err != nil {
		return nil, nil, err
	}
	if app, err = build(middleware.App); err != nil {
		return nil, nil, err
	}
	return api, app, nil
}

// missing says why no middleware name is in force.
func (p *middlewares) missing(name string) string {
	if f, ok := p.failed[name]; ok {
		return "it failed to build: " + f.Error
	}
	if len(p.inForce) == 0 {
		return "there are none"
	}
	return "those in force: " + fmt.Sprint(slices.Sorted(maps.Keys(p.inForce)))
}

// report lists the middleware in force, those that failed, and the
// pipelines when they could not be put in force.
func (p *middlewares) report(st *Status) {
	for name, in := range p.inForce {
		st.InUse = append(st.InUse, Resource{Kind: kindComponent, Name: name, Source: in.source, Version: in.version})
	}
	for _, f := range p.failed {
		st.Rejected = append(st.Rejected, f.Rejection)
	}
	if p.refused != nil {
		st.Rejected = append(st.Rejected, *p.refused)
	}
}

var _ componentType = (*middlewares)(nil)
