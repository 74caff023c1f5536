package reload

import (
	"context"
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
	*family[middleware.Middleware]
	sw   *middlewareTarget
	conf func() *config.Configuration // the Configuration in force
	// refused is why the pipelines of the Configuration in force could
	// not be built; nil: they are in force.
	refused *Rejection
}

func newMiddlewares(secrets *secretCache, log *slog.Logger, m *metrics) *middlewares {
	words := familyWords{noun: "middleware", key: "middleware", ready: "in force for the calls that start from now on",
		replace: "in force for the calls that start from now on", removed: "a pipeline that names it is refused from now on"}
	t := &middlewareTarget{}
	return &middlewares{family: newFamily[middleware.Middleware](t, words, secrets, log, m, 0), sw: t}
}

// start builds the middleware of cs and puts the pipelines of the
// Configuration in force: any error stops the sidecar, a pipeline naming
// a Component that is not in force among them.
func (p *middlewares) start(ctx context.Context, tg Targets, cs []placed) error {
	if err := p.family.start(ctx, tg, cs); err != nil || !p.bound {
		return err
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
// pipelines in force again. retry: try again those that failed, and the
// pipelines if they were refused.
func (p *middlewares) apply(ctx context.Context, cs []placed, retry bool) {
	if !p.bound || retry && len(p.failed) == 0 && p.refused == nil {
		return
	}
	p.applyWants(ctx, wants(cs), retry)
	p.sw.SetComponents(p.components())
	p.setPipelines()
}

// setPipelines puts the pipelines of the Configuration in force, built of
// the middleware in force; if they cannot be built, those in force stay.
func (p *middlewares) setPipelines() {
	if !p.bound {
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
			out = append(out, middleware.Handler{Name: h.Name, Type: h.Type, Middleware: b.built})
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
	p.family.report(st)
	if p.refused != nil {
		st.Rejected = append(st.Rejected, *p.refused)
	}
}

var _ componentType = (*middlewares)(nil)

// middlewareTarget is the middleware switch; the middleware built are
// put in force through the pipelines, so there is nothing to add, put or
// remove on it.
type middlewareTarget struct{ *middleware.Switch }

func (t *middlewareTarget) bind(tg Targets) bool {
	t.Switch = tg.Middleware
	return t.Switch != nil
}

func (t *middlewareTarget) build(_ context.Context, w want, secrets components.Secrets) (middleware.Middleware, error) {
	return components.BuildMiddleware(*w.comp, secrets)
}

func (t *middlewareTarget) check(middleware.Middleware) error                 { return nil }
func (t *middlewareTarget) ping(context.Context, middleware.Middleware) error { return nil }
func (t *middlewareTarget) add(middleware.Middleware) error                   { return nil }
func (t *middlewareTarget) put(middleware.Middleware) error                   { return nil }
func (t *middlewareTarget) remove(string)                                     {}
func (t *middlewareTarget) close(middleware.Middleware)                       {}
