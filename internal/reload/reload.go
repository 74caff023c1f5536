// Package reload keeps a sidecar's resources (Components, its
// Configuration, Resiliency) in step with where they are read from while it
// serves: in standalone mode the --resources-path folders and the --config
// file, polled; in kubernetes mode also the API server's objects, watched,
// and the Secrets that Components read, polled.
//
// A change is put in force only once it is known to work, so a bad change
// never takes effect:
//   - a source (a file, an object) whose new version does not parse or
//     validate is refused whole; the version in force stays. The refusal
//     is logged with the source and the field, counted in
//     tandem_resource_reloads_total{outcome="rejected"}, and listed by
//     Status until a new version replaces it;
//   - a new or changed state store is built and must answer (state.Pinger)
//     before it takes calls; until it does the store it replaces keeps
//     serving (or, for a new name, there is none), and it is tried again
//     every Sources.Resync. Calls in flight on a replaced store finish on
//     it; a removed store answers ERR_STATE_STORE_NOT_FOUND from then on;
//   - tracing, access control and resiliency policies switch whole, for
//     the calls that start after the change.
//
// At start (Load, Apply) the rules are the sidecar's as before: any error
// stops it, except a store whose Component sets spec.ignoreErrors, and
// stores are not pinged (they connect on first use).
package reload

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-run/tandem/internal/acl"
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/config"
	"github.com/tandem-run/tandem/internal/kube"
	"github.com/tandem-run/tandem/internal/resiliency"
	"github.com/tandem-run/tandem/internal/telemetry"
	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/memory"
)

// Sources says where the resources are read from.
type Sources struct {
	AppID string
	// Namespace is the pod's in kubernetes mode, "" in standalone mode.
	Namespace string
	// Dirs are the --resources-path folders: Components and Resiliency.
	Dirs []string
	// ConfigFile is the --config file (standalone mode).
	ConfigFile string
	// Kube reads the namespace's objects (kubernetes mode); nil in
	// standalone mode.
	Kube *kube.Client
	// ConfigName is the Configuration --config names (kubernetes mode).
	ConfigName string
	// DefaultStore adds the embedded in-memory store "statestore" when no
	// state store Component applies at start (standalone mode). It stays
	// until a Component of that name replaces it; it never comes back.
	DefaultStore bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics not registered

	// How often files are read (default 500ms), a store that could not
	// connect is tried again (5s), a store's first answer is waited for
	// (5s), and the Secrets that Components read are read again (30s).
	Poll, Resync, PingTimeout, SecretPoll time.Duration
}

// Targets are what the resources are put in force on.
type Targets struct {
	State *state.Service
	// Tracing is made from Configuration's settings; Run needs it made
	// with telemetry.Options.Reloadable.
	Tracing    *telemetry.Tracing
	ACL        *acl.Switch
	Resiliency *resiliency.Switch
}

// origin is a set of sources read together.
type origin int

const (
	originFiles             origin = iota // the --resources-path folders
	originConfigFile                      // the --config file
	originKubeComponents                  // the namespace's Components
	originKubeResiliencies                // the namespace's Resiliency resources
	originKubeConfiguration               // the Configuration --config names
)

// key is how an origin's own error is listed.
func (o origin) key() string {
	return [...]string{"--resources-path", "--config", "Components of the API server", "Resiliency resources of the API server", "--config (the API server's Configuration)"}[o]
}

// update is what an origin holds now, or why it could not be read.
type update struct {
	origin origin
	docs   map[string]doc
	err    error // the origin could not be read: nothing changes
}

// parsed is a source's version in force.
type parsed struct {
	doc   doc
	comps []components.Component
	res   []resiliency.Resource
	conf  *config.Configuration
}

// storeInForce is a state store put in force.
type storeInForce struct {
	hash            string // of what it was built from (secrets read)
	source, version string
}

// refusal is a rejected version, with what was refused.
type refusal struct {
	Rejection
	doc  doc    // a source's version refused
	hash string // a store's build refused
}

// Reloader reads the resources, puts them in force, and then keeps them in
// step with their sources (Run).
type Reloader struct {
	src Sources
	tg  Targets
	log *slog.Logger
	m   *metrics

	// Owned by the goroutine of Load, Apply, then Run.
	inForce    map[string]*parsed         // resource sources in force, by key
	originKeys map[origin]map[string]bool // the keys each origin last held
	conf       *parsed                    // the Configuration in force; nil: none
	set        *resiliency.Set            // the policies in force
	rejected   map[string]refusal         // by source key
	stores     map[string]storeInForce    // by store name
	storeErrs  map[string]refusal         // by store name
	secrets    *secretCache               // kubernetes mode
	embedded   bool                       // the default store is wanted
	listed     map[origin]listed          // the lists at start, watched on from
	hot        bool

	mu     sync.Mutex
	status Status
}

// Load reads every source and checks what it holds, as the sidecar does at
// start: any error is returned. Nothing is put in force yet (Apply).
func Load(ctx context.Context, src Sources) (*Reloader, error) {
	src.Logger = cmp.Or(src.Logger, slog.New(slog.DiscardHandler))
	src.Poll = cmp.Or(src.Poll, 500*time.Millisecond)
	src.Resync = cmp.Or(src.Resync, 5*time.Second)
	src.PingTimeout = cmp.Or(src.PingTimeout, 5*time.Second)
	src.SecretPoll = cmp.Or(src.SecretPoll, 30*time.Second)
	r := &Reloader{
		src:        src,
		log:        src.Logger,
		m:          newMetrics(src.Registerer),
		inForce:    map[string]*parsed{},
		originKeys: map[origin]map[string]bool{},
		rejected:   map[string]refusal{},
		stores:     map[string]storeInForce{},
		storeErrs:  map[string]refusal{},
		listed:     map[origin]listed{},
	}
	if src.Kube != nil {
		r.secrets = newSecretCache(src.Kube)
	}
	files, err := readDirs(src.Dirs)
	if err != nil {
		return nil, err
	}
	if err := r.loadResources(ctx, originFiles, files); err != nil {
		return nil, err
	}
	if src.ConfigFile != "" {
		d, err := fileDoc(src.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		if r.conf, err = parseConfig(d); err != nil {
			return nil, err
		}
	}
	if src.Kube != nil {
		if err := r.loadKube(ctx); err != nil {
			return nil, err
		}
	}
	if r.set, err = r.resiliencyWith("", nil); err != nil {
		return nil, err
	}
	r.embedded = src.DefaultStore && len(r.desiredStores()) == 0
	return r, nil
}

// loadResources takes the resource sources of an origin at start.
func (r *Reloader) loadResources(ctx context.Context, o origin, docs map[string]doc) error {
	keys := map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(docs)) {
		p, err := r.check(ctx, docs[key], true)
		if err != nil {
			return err
		}
		r.inForce[key] = p
		keys[key] = true
	}
	r.originKeys[o] = keys
	return nil
}

// Configuration is the Configuration in force; nil: none.
func (r *Reloader) Configuration() *config.Configuration {
	if r.conf == nil {
		return nil
	}
	return r.conf.conf
}

// Apply puts what Load read in force on tg: the state stores (not pinged:
// they connect on first use), access control and the resiliency policies.
// Tracing was made from Configuration's settings by the caller.
func (r *Reloader) Apply(ctx context.Context, tg Targets) error {
	r.tg = tg
	desired := r.desiredStores()
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		w := desired[name]
		sc, hash, err := r.build(ctx, w)
		if err == nil {
			if err = tg.State.Add(sc); err != nil {
				closeStore(sc)
				err = fmt.Errorf("%s: %w", w.source, err)
			}
		}
		if err != nil && w.comp != nil && w.comp.Spec.IgnoreErrors {
			r.log.Error("state store not loaded; going on without it, as its spec.ignoreErrors asks", "store", name, "file", w.comp.File, "err", err)
			r.storeErrs[name] = refusal{Rejection: Rejection{Kind: kindComponent, Name: name, Source: w.source, Version: w.version, Error: err.Error(), Since: time.Now()}, hash: hash}
			continue
		}
		if err != nil {
			return err
		}
		r.stores[name] = storeInForce{hash: hash, source: w.source, version: w.version}
		if w.comp == nil {
			r.log.Info("no state store components: using the embedded in-memory store; its data lives only as long as this sidecar", "store", name)
		} else {
			r.log.Info("state store ready", "store", name, "type", w.comp.Spec.Type, "file", w.comp.File)
		}
	}
	tg.ACL.Set(acl.New(r.Configuration().AccessControlSpec(), r.src.Namespace))
	tg.Resiliency.Set(r.set)
	r.warnIgnored(r.conf, r.inForceList())
	r.publish()
	return nil
}

// Run watches the sources and puts their changes in force until ctx ends.
func (r *Reloader) Run(ctx context.Context) error {
	r.hot = true
	r.publish()
	updates := make(chan update)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sentFiles := map[string]doc{}
	for key := range r.originKeys[originFiles] {
		sentFiles[key] = r.inForce[key].doc
	}
	configFile := r.src.ConfigFile
	var sentConf doc
	if r.conf != nil && configFile != "" {
		sentConf = r.conf.doc
	}
	if len(r.src.Dirs) > 0 || configFile != "" {
		wg.Go(func() { pollFiles(ctx, r.src.Dirs, configFile, r.src.Poll, sentFiles, sentConf, updates) })
	}
	if r.src.Kube != nil {
		r.watchKube(ctx, &wg, updates)
	}
	resync := time.NewTicker(r.src.Resync)
	defer resync.Stop()
	var secrets <-chan time.Time
	if r.secrets != nil {
		t := time.NewTicker(r.src.SecretPoll)
		defer t.Stop()
		secrets = t.C
	}
	r.log.Info("hot reload on: watching resources", "folders", r.src.Dirs, "config", cmp.Or(configFile, r.src.ConfigName), "kubernetes", r.src.Kube != nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			r.handle(ctx, u)
		case <-resync.C:
			if len(r.storeErrs) > 0 {
				r.reconcileStores(ctx, true)
			}
		case <-secrets:
			if r.secrets.refresh(ctx, r.secretNames()) {
				r.log.Info("a Secret that Components read changed: their stores are built again")
				r.retryRejected(ctx)
				r.applyResources(ctx)
			}
		}
		r.publish()
	}
}

// Status is what is in force, and what was refused.
func (r *Reloader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// handle puts an origin's change in force.
func (r *Reloader) handle(ctx context.Context, u update) {
	okey := u.origin.key()
	if u.err != nil {
		r.reject(okey, refusal{Rejection: Rejection{Source: okey, Error: u.err.Error()}})
		return
	}
	delete(r.rejected, okey)
	switch u.origin {
	case originConfigFile, originKubeConfiguration:
		r.handleConfig(u)
	default:
		r.handleResources(ctx, u)
	}
}

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
			if rej := r.rejected[key]; rej.doc.key != "" && r.take(ctx, rej.doc, true) {
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
		r.reject(d.key, refusal{Rejection: Rejection{Kind: kindConfiguration, Name: d.name, Source: d.key, Version: d.version, Error: err.Error()}, doc: d})
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

// publish makes Status what is in force now.
func (r *Reloader) publish() {
	st := Status{HotReload: r.hot, InUse: []Resource{}, Rejected: []Rejection{}}
	for name, s := range r.stores {
		if s.source == "embedded" {
			continue
		}
		st.InUse = append(st.InUse, Resource{Kind: kindComponent, Name: name, Source: s.source, Version: s.version})
	}
	for _, p := range r.inForce {
		for _, res := range p.res {
			if len(res.Scopes) == 0 || slices.Contains(res.Scopes, r.src.AppID) {
				st.InUse = append(st.InUse, Resource{Kind: kindResiliency, Name: res.Metadata.Name, Source: p.doc.key, Version: p.doc.version})
			}
		}
	}
	if r.conf != nil {
		st.InUse = append(st.InUse, Resource{Kind: kindConfiguration, Name: r.conf.conf.Metadata.Name, Source: r.conf.doc.key, Version: r.conf.doc.version})
	}
	if r.secrets != nil {
		st.InUse = append(st.InUse, r.secrets.inUse()...)
	}
	sortResources(st.InUse)
	counts := map[string]int{}
	for _, rej := range r.rejected {
		st.Rejected = append(st.Rejected, rej.Rejection)
		counts[cmp.Or(rej.Kind, kindFile)]++
	}
	for _, rej := range r.storeErrs {
		st.Rejected = append(st.Rejected, rej.Rejection)
		counts[kindComponent]++
	}
	sort.Slice(st.Rejected, func(i, j int) bool {
		a, b := st.Rejected[i], st.Rejected[j]
		return a.Source < b.Source || a.Source == b.Source && a.Name < b.Name
	})
	for _, k := range kinds {
		r.m.rejected.WithLabelValues(k).Set(float64(counts[k]))
	}
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
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
