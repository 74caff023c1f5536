package reload

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/telemetry"
)

// configurationKind keeps the sidecar's Configuration in force: its
// tracing and its access control, each switched whole for the calls that
// start after the change. There is one Configuration: the --config file,
// or the object --config names; once read, it stays until a new version
// replaces it.
//
// Its tracing is put in force on commit, not on apply: an exporter may
// refuse settings that parse (an OTLP endpoint without a port), and
// telemetry.Tracing.Update is the only check of that. A version whose
// tracing is refused is refused whole, as if it did not parse, and the
// Configuration in force stays, its tracing included. This is why the
// Configuration reads its origins alone.
type configurationKind struct {
	cur, staged *configVersion
	namespace   string
	log         *slog.Logger
	tracing     *telemetry.Tracing // nil until start
	acl         *acl.Switch
	applied     *configVersion // the version whose access control is in force
	started     bool
	// pipelines puts the middleware pipelines of the Configuration in
	// force; components finds the Components they name.
	pipelines  *middlewares
	components func(name string) (components.Component, bool)
}

// configVersion is a version of the Configuration.
type configVersion struct {
	doc     doc
	conf    *config.Configuration
	tracing config.TracingSettings
}

func newConfigurationKind(namespace string, log *slog.Logger) *configurationKind {
	return &configurationKind{namespace: namespace, log: log}
}

func (k *configurationKind) kind() string { return kindConfiguration }

// current is the Configuration in force; nil: none.
func (k *configurationKind) current() *config.Configuration {
	if k.cur == nil {
		return nil
	}
	return k.cur.conf
}

// stage parses d's Configuration and its tracing settings.
func (k *configurationKind) stage(_ context.Context, d doc) (int, error) {
	c, err := config.Parse(d.body, d.key)
	if err != nil {
		return 0, err
	}
	ts, err := c.TracingSettings()
	if err != nil {
		return 0, err
	}
	if err := k.checkPipelines(c); err != nil {
		return 0, fmt.Errorf("%s: %w", d.key, err)
	}
	k.staged = &configVersion{doc: d, conf: c, tracing: ts}
	return 1, nil
}

// commit puts the staged version in force, and, once started, its tracing
// (see configurationKind).
func (k *configurationKind) commit(key string) error {
	v := k.staged
	if v == nil || v.doc.key != key {
		return nil
	}
	k.staged = nil
	if k.started {
		if err := k.tracing.Update(v.tracing); err != nil {
			return err
		}
		before, _ := k.current().HotReload()
		if after, _ := v.conf.HotReload(); after != before {
			k.log.Warn("spec.features "+config.FeatureHotReload+" changed; it is read at start only", "source", key)
		}
		k.warnIgnored(v.conf)
	}
	k.cur = v
	return nil
}

func (k *configurationKind) drop(key string) {
	if k.staged != nil && k.staged.doc.key == key {
		k.staged = nil
	}
}

// remove keeps the Configuration in force: a deleted object is refused
// (its origin reads one object), and a --config file that cannot be read
// is its origin's error.
func (k *configurationKind) remove(string) {}

// start puts the access control in force; the caller made tg.Tracing from
// the Configuration's settings.
func (k *configurationKind) start(_ context.Context, tg Targets) error {
	k.started, k.tracing, k.acl = true, tg.Tracing, tg.ACL
	k.setACL()
	k.warnIgnored(k.current())
	return nil
}

// apply puts the access control of a new version in force. Nothing fails
// to apply: a retry has nothing to do.
func (k *configurationKind) apply(_ context.Context, retry bool) {
	if !retry && k.applied != k.cur {
		k.setACL()
		if k.pipelines != nil {
			k.pipelines.setPipelines()
		}
	}
}

// checkPipelines checks that the handlers of c's pipelines name
// middleware Components in force for this app, of the type they say.
func (k *configurationKind) checkPipelines(c *config.Configuration) error {
	if k.components == nil {
		return nil
	}
	for _, field := range []string{"httpPipeline", "appHttpPipeline"} {
		for i, h := range c.PipelineHandlers(field) {
			comp, ok := k.components(h.Name)
			switch {
			case !ok:
				return fmt.Errorf("configuration %q: spec.%s.handlers[%d].name: no Component %q applies to this app; add a Component of type %s by that name, or take the handler out",
					c.Metadata.Name, field, i, h.Name, h.Type)
			case comp.Spec.Type != h.Type:
				return fmt.Errorf("configuration %q: spec.%s.handlers[%d].type %q: Component %q is of type %q",
					c.Metadata.Name, field, i, h.Type, h.Name, comp.Spec.Type)
			}
		}
	}
	return nil
}

func (k *configurationKind) setACL() {
	k.acl.Set(acl.New(k.current().AccessControlSpec(), k.namespace))
	k.applied = k.cur
}

func (k *configurationKind) report(st *Status) {
	if k.cur != nil {
		st.InUse = append(st.InUse, Resource{Kind: kindConfiguration, Name: k.cur.conf.Metadata.Name, Source: k.cur.doc.key, Version: k.cur.doc.version})
	}
}

// warnIgnored logs the sections of c accepted without effect.
func (k *configurationKind) warnIgnored(c *config.Configuration) {
	if c != nil && len(c.Ignored) > 0 {
		k.log.Warn("configuration sections without effect in this sidecar", "config", c.Metadata.Name, "sections", c.Ignored)
	}
}

var _ reconciler = (*configurationKind)(nil)
