package reload

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/resiliency"
)

// handleResources takes the new versions of an origin's Components and
// Resiliency resources, each source whole or not at all.
func (r *Reloader) handleResources(ctx context.Context, u update) {
	changed := false
	old := r.originKeys[u.origin]
	for _, key := range slices.Sorted(maps.Keys(old)) {
		if _, ok := u.docs[key]; ok {
			continue
		}
		delete(r.rejected, key)
		if p := r.inForce[key]; p != nil {
			delete(r.inForce, key)
			changed = true
			r.m.reloads.WithLabelValues(kindOf(p.doc, p), "applied").Inc()
			r.log.Info("resource removed", "source", key)
		}
	}
	keys := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(u.docs)) {
		keys[key] = true
		if r.take(ctx, u.docs[key], false) {
			changed = true
		}
	}
	r.originKeys[u.origin] = keys
	if !changed {
		return
	}
	r.retryRejected(ctx)
	r.applyResources(ctx)
}

// retryRejected takes the versions refused for what another source held
// (the same component name, a target with two policies) or for a Secret
// (missing, or without the key), which may fit now.
func (r *Reloader) retryRejected(ctx context.Context) {
	for again := true; again; {
		again = false
		for _, key := range slices.Sorted(maps.Keys(r.rejected)) {
			if rej := r.rejected[key]; rej.doc.key != "" && !rej.conf && r.take(ctx, rej.doc, true) {
				again = true
			}
		}
	}
}

// applyResources puts the resiliency policies and state stores of the
// sources in force.
func (r *Reloader) applyResources(ctx context.Context) {
	set, err := r.resiliencyWith("", nil)
	if err != nil { // each source was checked with the others: not expected
		r.log.Error("resiliency policies not changed", "err", err)
	} else if !samePolicies(set, r.set) {
		r.set = set
		r.tg.Resiliency.Set(set)
		r.log.Info("resiliency policies in force", "apps", len(set.Apps), "components", len(set.Components))
	}
	r.reconcileStores(ctx, false)
}

// take puts the version d of a source in force when it checks out, and
// reports whether it did. quiet: d was refused before; it is not counted
// or logged again if it still is.
func (r *Reloader) take(ctx context.Context, d doc, quiet bool) bool {
	prev := r.inForce[d.key]
	if prev != nil && prev.doc.version == d.version {
		delete(r.rejected, d.key)
		return false
	}
	if rej, ok := r.rejected[d.key]; ok && rej.doc.version == d.version && !quiet {
		return false
	}
	p, err := r.check(ctx, d, false)
	if err != nil {
		if !quiet {
			r.reject(d.key, refusal{Rejection: Rejection{Kind: kindOf(d, prev), Name: d.name, Source: d.key, Version: d.version, Error: err.Error()}, doc: d})
		}
		return false
	}
	delete(r.rejected, d.key)
	r.inForce[d.key] = p
	r.m.reloads.WithLabelValues(kindOf(d, p), "applied").Inc()
	r.log.Info("resource changed: in force", "source", d.key, "version", d.version)
	r.warnIgnored(nil, []*parsed{p})
	return true
}

// reject records a refused version, logs it and counts it.
func (r *Reloader) reject(key string, rej refusal) {
	rej.Since = time.Now()
	r.rejected[key] = rej
	r.m.reloads.WithLabelValues(cmp.Or(rej.Kind, kindFile), "rejected").Inc()
	r.log.Error("resource change rejected: what was in force stays", "source", rej.Source, "version", rej.Version, "err", rej.Error)
}

func kindOf(d doc, p *parsed) string {
	switch {
	case d.kind != "":
		return d.kind
	case p != nil && len(p.comps) > 0:
		return kindComponent
	case p != nil && len(p.res) > 0:
		return kindResiliency
	case p != nil && p.conf != nil:
		return kindConfiguration
	}
	return kindFile
}

// check parses a resource source and checks it against the sources in
// force: names unique, each state store buildable (a store whose
// Component sets ignoreErrors may fail), resiliency policies that do not
// clash.
func (r *Reloader) check(ctx context.Context, d doc, start bool) (*parsed, error) {
	p := &parsed{doc: d}
	var err error
	if p.comps, err = components.Parse(d.body, d.key); err != nil {
		return nil, err
	}
	if p.res, err = resiliency.Parse(d.body, d.key); err != nil {
		return nil, err
	}
	if d.kind != "" && len(p.comps)+len(p.res) == 0 {
		return nil, fmt.Errorf("%s: holds no %s", d.key, d.kind)
	}
	seen := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(r.inForce)) {
		if key == d.key {
			continue
		}
		for _, c := range r.inForce[key].comps {
			seen[c.Metadata.Name] = key
		}
	}
	for _, c := range p.comps {
		if other, dup := seen[c.Metadata.Name]; dup {
			return nil, fmt.Errorf("%s: component %q is also defined in %s; names must be unique", d.key, c.Metadata.Name, other)
		}
		seen[c.Metadata.Name] = d.key
	}
	for _, c := range components.Scoped(p.comps, r.src.AppID) {
		sc, err := components.Build(c, r.secretsFor(ctx))
		if err == nil && r.tg.State != nil {
			err = r.tg.State.Check(sc)
		}
		closeStore(sc)
		if err != nil && !c.Spec.IgnoreErrors { // else: Apply or reconcileStores says so
			return nil, err
		}
	}
	if !start && len(p.res) > 0 {
		if _, err := r.resiliencyWith(d.key, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// resiliencyWith is the Set of the sources in force, with p in place of
// the source key ("": none).
func (r *Reloader) resiliencyWith(key string, p *parsed) (*resiliency.Set, error) {
	var all []resiliency.Resource
	for _, k := range slices.Sorted(maps.Keys(r.inForce)) {
		q := r.inForce[k]
		if k == key {
			continue
		}
		all = append(all, q.res...)
	}
	if p != nil {
		all = append(all, p.res...)
	}
	return resiliency.NewSet(all, r.src.AppID)
}

func samePolicies(a, b *resiliency.Set) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equalJSON(a.Apps, b.Apps) && equalJSON(a.Components, b.Components)
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// handleConfig takes a new version of the Configuration.
func (r *Reloader) handleConfig(u update) {
	okey := u.origin.key()
	if len(u.docs) == 0 {
		name := r.src.ConfigName
		r.reject(okey, refusal{Rejection: Rejection{Kind: kindConfiguration, Name: name, Source: okey,
			Error: fmt.Sprintf("Configuration %q was deleted; the one read last stays in force until it is created again", name)}})
		return
	}
	var d doc
	for _, d = range u.docs {
	}
	if r.conf != nil && r.conf.doc.version == d.version {
		delete(r.rejected, d.key)
		return
	}
	if rej, ok := r.rejected[d.key]; ok && rej.doc.version == d.version {
		return
	}
	p, err := parseConfig(d)
	if err == nil {
		var ts config.TracingSettings
		if ts, err = p.conf.TracingSettings(); err == nil {
			err = r.tg.Tracing.Update(ts)
		}
	}
	if err != nil {
		r.reject(d.key, refusal{Rejection: Rejection{Kind: kindConfiguration, Name: d.name, Source: d.key, Version: d.version, Error: err.Error()}, doc: d, conf: true})
		return
	}
	delete(r.rejected, d.key)
	r.tg.ACL.Set(acl.New(p.conf.AccessControlSpec(), r.src.Namespace))
	before, _ := r.Configuration().HotReload()
	if after, _ := p.conf.HotReload(); after != before {
		r.log.Warn("spec.features "+config.FeatureHotReload+" changed; it is read at start only", "source", d.key)
	}
	r.conf = p
	r.m.reloads.WithLabelValues(kindConfiguration, "applied").Inc()
	r.log.Info("configuration changed: in force", "source", d.key, "version", d.version)
	r.warnIgnored(p, nil)
}

func parseConfig(d doc) (*parsed, error) {
	c, err := config.Parse(d.body, d.key)
	if err != nil {
		return nil, err
	}
	return &parsed{doc: d, conf: c}, nil
}

// inForceList is the resource sources in force, by key.
func (r *Reloader) inForceList() []*parsed {
	var out []*parsed
	for _, key := range slices.Sorted(maps.Keys(r.inForce)) {
		out = append(out, r.inForce[key])
	}
	return out
}

// warnIgnored logs the fields of conf and ps accepted without effect.
func (r *Reloader) warnIgnored(conf *parsed, ps []*parsed) {
	if conf != nil && len(conf.conf.Ignored) > 0 {
		r.log.Warn("configuration sections without effect in this sidecar", "config", conf.conf.Metadata.Name, "sections", conf.conf.Ignored)
	}
	var comps []components.Component
	var res []resiliency.Resource
	for _, p := range ps {
		comps = append(comps, components.Scoped(p.comps, r.src.AppID)...)
		res = append(res, p.res...)
	}
	if ignored := components.Ignored(comps, r.src.Namespace); len(ignored) > 0 {
		r.log.Warn("component fields without effect in this sidecar", "fields", ignored)
	}
	if set, err := resiliency.NewSet(res, r.src.AppID); err == nil && len(set.Ignored) > 0 {
		r.log.Warn("resiliency fields without effect in this sidecar", "fields", set.Ignored)
	}
}
