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
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	conf bool   // doc is a Configuration's: not retried as resources
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
