package reload

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"

	"github.com/tandem-run/tandem/internal/resiliency"
)

// resiliencyKind keeps the Resiliency resources in force, and their
// policies on the resiliency switch: they switch whole, for the calls that
// start after the change.
type resiliencyKind struct {
	parts   parts[resiliency.Resource]
	appID   string
	log     *slog.Logger
	sw      *resiliency.Switch // nil until start
	set     *resiliency.Set    // the policies on sw
	started bool
}

func newResiliencyKind(appID string, log *slog.Logger) *resiliencyKind {
	return &resiliencyKind{appID: appID, log: log}
}

func (k *resiliencyKind) kind() string { return kindResiliency }

// stage parses d's Resiliency resources and checks that, in place of its
// source's version, their policies do not clash with those in force (a
// target given two policies of a kind).
func (k *resiliencyKind) stage(_ context.Context, d doc) (int, error) {
	res, err := resiliency.Parse(d.body, d.key)
	if err != nil {
		return 0, err
	}
	if len(res) > 0 {
		if _, err := resiliency.NewSet(append(k.parts.items(d.key), res...), k.appID); err != nil {
			return 0, err
		}
	}
	k.parts.stage(d, res)
	return len(res), nil
}

func (k *resiliencyKind) commit(key string) error {
	if p, ok := k.parts.staged[key]; ok && k.started {
		k.warnIgnored(p.items)
	}
	k.parts.commit(key)
	return nil
}

func (k *resiliencyKind) drop(key string)   { k.parts.drop(key) }
func (k *resiliencyKind) remove(key string) { k.parts.remove(key) }

func (k *resiliencyKind) start(_ context.Context, tg Targets) error {
	set, err := resiliency.NewSet(k.parts.items(""), k.appID)
	if err != nil {
		return err
	}
	k.started, k.sw, k.set = true, tg.Resiliency, set
	k.sw.Set(set)
	k.warnIgnored(k.parts.items(""))
	return nil
}

// apply puts the policies of the resources in force on the switch, if
// they changed. Nothing fails to apply: a retry has nothing to do.
func (k *resiliencyKind) apply(_ context.Context, retry bool) {
	if retry {
		return
	}
	set, err := resiliency.NewSet(k.parts.items(""), k.appID)
	if err != nil { // each source was checked with the others: not expected
		k.log.Error("resiliency policies not changed", "err", err)
		return
	}
	if samePolicies(set, k.set) {
		return
	}
	k.set = set
	k.sw.Set(set)
	k.log.Info("resiliency policies in force", "apps", len(set.Apps), "components", len(set.Components))
}

// report lists the resources in force that apply to this app.
func (k *resiliencyKind) report(st *Status) {
	for _, p := range k.parts.all() {
		for _, res := range p.items {
			if len(res.Scopes) == 0 || slices.Contains(res.Scopes, k.appID) {
				st.InUse = append(st.InUse, Resource{Kind: kindResiliency, Name: res.Metadata.Name, Source: p.source, Version: p.version})
			}
		}
	}
}

// warnIgnored logs the fields of res accepted without effect.
func (k *resiliencyKind) warnIgnored(res []resiliency.Resource) {
	if set, err := resiliency.NewSet(res, k.appID); err == nil && len(set.Ignored) > 0 {
		k.log.Warn("resiliency fields without effect in this sidecar", "fields", set.Ignored)
	}
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

var _ reconciler = (*resiliencyKind)(nil)
