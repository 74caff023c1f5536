package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/tandem-run/tandem/internal/components"
)

// componentKind keeps the Components in force: it checks what holds for
// all of them (names unique across all Components whatever their type,
// scopes), and hands each to the handler of its type's family, which
// builds it and puts it in force on its target.
type componentKind struct {
	parts     parts[components.Component]
	types     map[string]componentType // by family: "state" for state.redis
	appID     string
	namespace string
	log       *slog.Logger
	started   bool
}

// componentType puts in force the Components of one family of types (the
// part of spec.type before the dot), on its target. It is handed the
// Components in force that apply to this app.
type componentType interface {
	// check reports whether c can be built, before c is put in force.
	check(ctx context.Context, c components.Component) error
	// start puts cs in force on tg as the sidecar does at start: an error
	// stops it.
	start(ctx context.Context, tg Targets, cs []placed) error
	// apply makes the components in force on the target cs; retry: try
	// again those that failed to apply.
	apply(ctx context.Context, cs []placed, retry bool)
	// report adds to st the components in use and those that failed.
	report(st *Status)
}

// placed is a Component in force, and the version of the source it came
// from.
type placed struct {
	comp            components.Component
	source, version string
}

func newComponentKind(appID, namespace string, log *slog.Logger, types map[string]componentType) *componentKind {
	return &componentKind{types: types, appID: appID, namespace: namespace, log: log}
}

func (k *componentKind) kind() string { return kindComponent }

// stage parses d's Components and checks them: names unique among all
// Components in force, and each that applies to this app buildable by the
// handler of its type (a Component that sets ignoreErrors may fail: apply
// says so).
func (k *componentKind) stage(ctx context.Context, d doc) (int, error) {
	comps, err := components.Parse(d.body, d.key)
	if err != nil {
		return 0, err
	}
	seen := map[string]string{}
	for _, p := range k.parts.all() {
		if p.source == d.key {
			continue
		}
		for _, c := range p.items {
			seen[c.Metadata.Name] = p.source
		}
	}
	for _, c := range comps {
		if other, dup := seen[c.Metadata.Name]; dup {
			return 0, fmt.Errorf("%s: component %q is also defined in %s; names must be unique", d.key, c.Metadata.Name, other)
		}
		seen[c.Metadata.Name] = d.key
	}
	for _, c := range components.Scoped(comps, k.appID) {
		t, err := k.typeOf(c)
		if err != nil {
			return 0, err
		}
		if err := t.check(ctx, c); err != nil && !c.Spec.IgnoreErrors {
			return 0, err
		}
	}
	k.parts.stage(d, comps)
	return len(comps), nil
}

// typeOf is the handler of c's type.
func (k *componentKind) typeOf(c components.Component) (componentType, error) {
	t, ok := k.types[familyOf(c)]
	if !ok {
		return nil, fmt.Errorf("%s: component %q: type %q is not handled by this sidecar", c.File, c.Metadata.Name, c.Spec.Type)
	}
	return t, nil
}

func (k *componentKind) commit(key string) error {
	if p, ok := k.parts.staged[key]; ok && k.started {
		k.warnIgnored(components.Scoped(p.items, k.appID))
	}
	k.parts.commit(key)
	return nil
}

func (k *componentKind) drop(key string)   { k.parts.drop(key) }
func (k *componentKind) remove(key string) { k.parts.remove(key) }

// start puts the Components Load read in force, each family on its
// handler's target.
func (k *componentKind) start(ctx context.Context, tg Targets) error {
	k.started = true
	for _, f := range slices.Sorted(maps.Keys(k.types)) {
		if err := k.types[f].start(ctx, tg, k.placed(f)); err != nil {
			return err
		}
	}
	var all []components.Component
	for _, p := range k.placed("") {
		all = append(all, p.comp)
	}
	k.warnIgnored(all)
	return nil
}

func (k *componentKind) apply(ctx context.Context, retry bool) {
	for _, f := range slices.Sorted(maps.Keys(k.types)) {
		k.types[f].apply(ctx, k.placed(f), retry)
	}
}

func (k *componentKind) report(st *Status) {
	for _, t := range k.types {
		t.report(st)
	}
}

// placed are the Components in force that apply to this app, of the
// family f ("": all), in the order of their sources.
func (k *componentKind) placed(f string) []placed {
	var out []placed
	for _, p := range k.parts.all() {
		for _, c := range components.Scoped(p.items, k.appID) {
			if f == "" || familyOf(c) == f {
				out = append(out, placed{comp: c, source: p.source, version: p.version})
			}
		}
	}
	return out
}

// lookup is the Component in force named name that applies to this app.
func (k *componentKind) lookup(name string) (components.Component, bool) {
	for _, p := range k.placed("") {
		if p.comp.Metadata.Name == name {
			return p.comp, true
		}
	}
	return components.Component{}, false
}

// familyOf is the family of c's type: "state" for state.redis.
func familyOf(c components.Component) string {
	f, _, _ := strings.Cut(c.Spec.Type, ".")
	return f
}

// warnIgnored logs the fields of cs accepted without effect.
func (k *componentKind) warnIgnored(cs []components.Component) {
	if ignored := components.Ignored(cs, k.namespace); len(ignored) > 0 {
		k.log.Warn("component fields without effect in this sidecar", "fields", ignored)
	}
}

// secretNames are the Secrets the Components in force read, and those of
// refused versions (one may have been refused for want of a Secret).
func (k *componentKind) secretNames(refused []doc) []string {
	comps := k.parts.items("")
	for _, d := range refused {
		if cs, err := components.Parse(d.body, d.key); err == nil {
			comps = append(comps, cs...)
		}
	}
	seen := map[string]bool{}
	for _, c := range components.Scoped(comps, k.appID) {
		for _, ref := range c.SecretRefs() {
			seen[ref.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// componentInForce is a Component a family's handler put in force.
type componentInForce struct {
	hash            string // of what it was built from (secrets read)
	source, version string
}

// componentFailure is a Component a family's handler could not put in
// force, and the hash of what it was built from.
type componentFailure struct {
	Rejection
	hash string
}

// componentHash is a hash of what c is built from, its secrets read: a
// Component whose hash has not changed is not built again.
func componentHash(ctx context.Context, secrets *secretCache, c components.Component) (string, error) {
	md, err := c.ResolveMetadata(secrets.lookup(ctx))
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

var _ reconciler = (*componentKind)(nil)
